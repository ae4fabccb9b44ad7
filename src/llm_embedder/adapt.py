"""``llm-embedder adapt``: an embedder tuned to a user's own data and LLM, with no labelled queries.

The pipeline of ``run`` with another first stage: the data stage reads the user's files and makes
training and dev data from them with the user's LLM (:mod:`llm_embedder.userdata.build`); mining,
scoring, training and selection are :class:`llm_embedder.pipeline.Pipeline`'s own stages, cached and
resumable the same way.  Selection trains the recipe's variants (``recipes/adapt.yaml``: with and
without the task instructions, each also merged with the base), scores them on the held-out dev part
of the generated data and on a **generality check** (an evaluation folder the user names with
``--check``, by default the demo data's dev split: text the adaptation never saw), and keeps:

- only models at least level with the base on the check (mean relative score >= ``ood_floor``);
- among those, the safest (no instructions before instructions, merged with the base before unmerged)
  unless a riskier one is better on dev by more than ``tie_margin`` (:func:`pick`);
- the base encoder itself when no variant stays level on the check.

The output folder is an ordinary Embedder folder (``serve`` and ``Embedder.from_pretrained`` load it)
plus ``report.md`` / ``report.json`` (what was generated, both tables, the choice, time per stage) and
a model card (``README.md``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_embedder.errors import InputError
from llm_embedder.fileio import atomic_path, read_json, write_json
from llm_embedder.fingerprint import code_digest, file_digest
from llm_embedder.freshness import Stage
from llm_embedder.pipeline import DATA_STAMP, SELECT_STAGES, Pipeline, PipelineConfig
from llm_embedder.progress import Progress
from llm_embedder.userdata.build import UserDataSettings, UserInputs, build_user_data
from llm_embedder.userdata.generate import GenerationSettings

DEFAULT_RECIPE = Path(__file__).parent / "recipes" / "adapt.yaml"
REPORT_FILES = ("report.md", "report.json", "README.md", "GENERATED.md")


@dataclass
class AdaptConfig(PipelineConfig):
    generation: dict[str, Any] = field(default_factory=dict)
    """:class:`GenerationSettings` (``per_key``, ``filter_top_k``, ...) and :class:`UserDataSettings`
    (``dev_share``, ``candidates``, ``per_source``, ``seed``) in one mapping."""
    writer: str | None = None
    """The LLM that writes the queries and extracts the answers (a zoo name, folder or ``.gguf``); none:
    ``lm``.  A bigger writer than the reader is InPars' setting: rewards still come from ``lm``."""
    check: str | None = None
    """Evaluation folder of the generality check; none: the demo data's dev split (built once)."""
    check_size: str = "small"
    """Size of the demo data built for the default check (``quick`` has smaller corpora: faster, wider intervals)."""
    tie_margin: float = 0.01
    """A riskier variant replaces a safer one only when its dev score is higher by more than this."""

    def data_settings(self) -> UserDataSettings:
        gen_fields = {f.name for f in dataclasses.fields(GenerationSettings)}
        settings = dict(self.generation)
        generation = GenerationSettings(**{k: settings.pop(k) for k in list(settings) if k in gen_fields})
        try:
            return UserDataSettings(generation=generation, **settings)
        except TypeError as exc:
            raise ValueError(f"generation: {exc}") from None


def risk(name: str, variants: dict[str, dict[str, Any]], default_instructions: bool) -> tuple[bool, bool]:
    """Sort key, safest first: no instructions before instructions (a base pre-trained without them,
    such as MiniLM, loses on natural questions with them), a merge with the base before the unmerged."""
    variant, merged, _ = name.partition("+base@")
    techniques = variants.get(variant, {}).get("techniques", {})
    return (bool(techniques.get("instructions", default_instructions)), not merged)


def pick(
    scores: dict[str, dict[str, float | None]],
    ood_floor: float,
    tie_margin: float,
    risk_key=lambda name: (False, False),
) -> dict[str, Any]:
    """Choose among ``{name: {"dev": score, "ood": score}}`` (means relative to the base).

    Eligible: ``ood >= ood_floor``.  Candidates are visited from the safest (``risk_key``); the pick
    moves to a riskier one only if its dev score beats the current pick's by more than ``tie_margin``.
    When none is eligible the base encoder is kept (``chosen: None``): adapting would cost generality.
    """
    eligible = sorted((n for n, s in scores.items() if (s.get("ood") or 0.0) >= ood_floor), key=risk_key)
    if not eligible:
        rule = f"no variant reached {ood_floor} x base on the generality check: the base encoder is kept"
        return {"chosen": None, "rule": rule, "candidates": scores}
    best = eligible[0]
    for name in eligible[1:]:
        if (scores[name]["dev"] or 0.0) > (scores[best]["dev"] or 0.0) + tie_margin:
            best = name
    rule = (
        f"level with the base on the generality check (>= {ood_floor}); the safest such variant unless "
        f"another is better on dev by more than {tie_margin}"
    )
    if (scores[best]["dev"] or 0.0) <= 1.0 + tie_margin:
        rule += "; note: no gain over the base on dev beyond the margin"
    return {"chosen": best, "rule": rule, "candidates": scores}


class AdaptPipeline(Pipeline):
    """:class:`Pipeline` whose data come from the user's files; ``select`` is the main job."""

    def __init__(self, config: AdaptConfig, inputs: UserInputs, show_progress: bool = True):
        self.inputs = inputs
        self.data_settings = config.data_settings()
        super().__init__(config, show_progress=show_progress)

    def data_identity(self) -> dict[str, Any]:
        return {
            "seed": self.data_settings.seed,
            "inputs": {kind: file_digest(path) for kind, path in self.inputs.given().items()},
            "settings": json.loads(json.dumps(dataclasses.asdict(self.data_settings))),
            "lm": self.config.lm,
            **({"writer": self.config.writer} if self.config.writer else {}),
            "lm_dtype": self.config.lm_dtype,
            "code": code_digest("llm_embedder.userdata"),
        }

    def build_data(self) -> Path:
        out = self.work / "data"
        stage = Stage(self.work / DATA_STAMP, self.data_key, product=out / "generation.json")
        if stage.begin(resumable=False):
            self.progress.ready("data", f"{out} is made from these inputs")
            return out
        self.progress.start("data", f"training data from {', '.join(self.inputs.given())}")
        lm = None
        if self.inputs.corpus or self.inputs.tools:
            from llm_embedder.models.lm import CausalLM

            lm = CausalLM.from_pretrained(self.config.writer or self.config.lm, dtype=self.config.lm_dtype)
        report = build_user_data(self.inputs, out, lm, self.data_settings, show_progress=self.show_progress)
        for task, part in report.items():
            self.progress.note(f"{task}: " + ", ".join(f"{k} {v}" for k, v in part.get("counts", {}).items()))
        stage.seal()
        self.progress.done(f"; what was made: {out / 'GENERATED.md'}")
        return out

    def check_folder(self, data: Path) -> Path:
        check = self.config.check
        if check:
            if not Path(check).is_dir():
                raise InputError(check, None, None, "the generality check is an evaluation folder (eval layout)")
            return Path(check)
        from llm_embedder.data.demo import build_demo, builder_digest

        out = self.work / "check-data"
        key = {"builder": builder_digest(), "size": self.config.check_size, "seed": 0}
        stage = Stage(self.work / ".check-stage.json", key, product=out / "dev")
        if not stage.begin(resumable=False):
            self.progress.note("generality check: building the demo data's dev split (seconds)")
            build_demo(out, seed=0, size=self.config.check_size, progress=False)
            stage.seal()
        return out / "dev"

    def risk(self, name: str) -> tuple[bool, bool]:
        """:func:`risk` of a candidate under this recipe's variants and training default."""
        variants = {v["name"]: v for v in self.config.select.get("variants", [])}
        return risk(name, variants, bool(self.config.train.get("techniques", {}).get("instructions", True)))

    def choose(self, scores: dict[str, dict[str, float | None]]) -> dict[str, Any]:
        return pick(
            scores,
            float(self.config.select.get("ood_floor", 1.0)),
            self.config.tie_margin,
            risk_key=self.risk,
        )

    def selected(self, selection: dict[str, Any]) -> dict[str, Any]:
        """What the output model records of its selection (``llm_embedder.json``, the model card)."""
        chosen = selection["chosen"]
        return {
            "by": "llm-embedder adapt",
            "variant": chosen or "base",
            # the base keeps the instruction set of its own settings
            "instructions": self.risk(chosen)[0] if chosen else None,
            "rule": selection["rule"],
            "relative_to_base": {
                name: {"dev": s.get("dev"), "check": s.get("ood")} for name, s in selection["candidates"].items()
            },
        }

    def adapt(self, out: Path) -> dict[str, Any]:
        """Every stage, then the chosen model, its report and model card written to ``out`` (whole, renamed)."""
        times: dict[str, float] = {}
        self.progress = Progress(SELECT_STAGES)

        def timed(name: str, fn, *args):
            started = time.perf_counter()
            result = fn(*args)
            times[name] = round(time.perf_counter() - started, 1)
            return result

        data = timed("data", self.build_data)
        files = timed("mine", self.mine, data)
        files = timed("score", self.score, files)
        if not (data / "dev").is_dir():
            raise InputError(
                None, None, None, "no dev data could be held out (too few documents or tools); add more sources"
            )
        selection = timed("train and select", self.select, files, data)
        report = self._report(data, selection, times)
        chosen = selection["chosen"]
        source = Path(selection["models"][chosen]) if chosen else None
        from llm_embedder.models.embedder import Embedder

        with atomic_path(out, is_dir=True) as tmp:
            if source is not None:
                shutil.copytree(source, tmp, dirs_exist_ok=True)
            else:
                Embedder.from_pretrained(self.config.encoder).save_pretrained(tmp)
            record_selection(tmp, report["selected"])
            write_json(tmp / "report.json", report)
            (tmp / "report.md").write_text(report_markdown(report, self.work), encoding="utf-8")
            (tmp / "README.md").write_text(model_card(report), encoding="utf-8")
            shutil.copyfile(data / "GENERATED.md", tmp / "GENERATED.md")
        print(f"\nadapted model: {out} ({chosen or 'the base encoder'}); report: {out / 'report.md'}")
        return report

    def _report(self, data: Path, selection: dict[str, Any], times: dict[str, float]) -> dict[str, Any]:
        boards = {}
        for split in ("dev", "ood"):
            board = self.work / "select" / f"eval-{split}" / "leaderboard.json"
            boards[split] = json.loads(board.read_text("utf-8")) if board.is_file() else None
        return {
            "inputs": self.inputs.given(),
            "lm": self.config.lm,
            "writer": self.config.writer or self.config.lm,
            "base": self.config.encoder,
            "generated": json.loads((data / "generation.json").read_text("utf-8")),
            "selection": {k: v for k, v in selection.items() if k != "models"},
            "chosen": selection["chosen"],
            "selected": self.selected(selection),
            "check": self.config.check or "the demo data's dev split",
            "leaderboards": boards,
            "seconds": times,
        }


def record_selection(model: Path, selected: dict[str, Any]) -> None:
    """Add to the model's ``llm_embedder.json`` how it was chosen (see :meth:`AdaptPipeline.selected`):
    a user sees what the evidence supported and can switch instructions with ``instructions=``.
    Loading ignores the record."""
    from llm_embedder.models.embedder import SETTINGS_FILE

    settings = read_json(model / SETTINGS_FILE, "model settings file")
    settings["selection"] = selected
    write_json(model / SETTINGS_FILE, settings)


def report_markdown(report: dict[str, Any], work: Path) -> str:
    lines = [
        "# Adaptation report",
        "",
        f"- inputs: {', '.join(f'{k} `{v}`' for k, v in report['inputs'].items())}",
        f"- LLM: `{report['lm']}` (queries written by `{report.get('writer', report['lm'])}`); "
        f"base encoder: `{report['base']}`",
        f"- chosen: **{report['chosen'] or 'the base encoder (no variant stayed level on the generality check)'}**",
        f"- rule: {report['selection']['rule']}",
        "- time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in report["seconds"].items()),
        "",
        "## Mean score relative to the base (dev, generality check)",
        "",
        "| variant | dev | check |",
        "|---|---|---|",
    ]
    for name, s in report["selection"]["candidates"].items():
        cells = ["-" if s.get(k) is None else f"{s[k]:.3f}" for k in ("dev", "ood")]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    for split, title in (
        ("dev", "Dev (held-out sources of your data)"),
        ("ood", f"Generality check ({report['check']})"),
    ):
        board = work / "select" / f"eval-{split}" / "leaderboard.md"
        if board.is_file():
            lines += ["", f"## {title}", "", board.read_text("utf-8").strip()]
    lines += ["", "## What was generated", ""]
    for task, part in report["generated"].items():
        lines.append(f"- {task}: " + ", ".join(f"{k} {v}" for k, v in part.get("counts", {}).items()))
    lines += ["", "Samples: `GENERATED.md`.", ""]
    return "\n".join(lines)


def model_card(report: dict[str, Any]) -> str:
    chosen = report["chosen"] or "base encoder (unchanged)"
    on = report.get("selected", {}).get("instructions")
    instructions = "as the base encoder's own settings" if on is None else ("on" if on else "off")
    return "\n".join(
        [
            "# Adapted LLM-Embedder model",
            "",
            f"Fine-tuned from `{report['base']}` with rewards from `{report['lm']}` on the user's own data "
            f"({', '.join(report['inputs'])}), no human labels, by `llm-embedder adapt`. Variant: **{chosen}**.",
            "",
            "Load it with `Embedder.from_pretrained(<this folder>)` or serve it with "
            "`llm-embedder serve --model <this folder>`; move existing collections to it with "
            "`llm-embedder collections reembed`.",
            "",
            f"Selection: {report['selection']['rule']}. Task instructions: {instructions}. "
            "`llm_embedder.json` records the choice under `selection` with each candidate's mean score "
            "relative to the base on dev and on the generality check; `Embedder.from_pretrained(<this folder>, "
            "instructions=...)` switches them. The evidence (dev and generality-check tables with intervals) "
            "is in `report.md`.",
            "",
        ]
    )
