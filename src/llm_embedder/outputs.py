"""Outputs that never destroy what a command did not make, and never resume from stale work.

One mechanism for every command.  A command declares its path options (:class:`Port`: the inputs,
including files named inside a recipe, and the outputs); ``llm-embedder`` checks every output
(:func:`declare`) before the command runs, and while it runs a write to a path it did not declare
is an error (``fileio.WRITE_GUARD``).  The rules, whatever ``--overwrite`` or ``--restart`` say:

- an input is never an output: an output equal to an input, inside an input folder, or a folder
  holding an input is refused;
- a file output whose path is an existing folder is refused, and a folder output whose path is a
  file (a folder is never replaced by a file, nor the reverse);
- an existing file the command did not write is replaced only with ``--overwrite``;
- an existing folder the command did not write is added to only with ``--overwrite`` (its files
  stay), and never when it holds another command's output, or a file or folder of the names the
  command writes there (``members``) that the command did not write; a folder written as a whole
  (a model, a dataset: ``WHOLE``) must be new, empty or the command's own earlier output;
- a restart (``--restart``, a changed pipeline stage) removes only what the folder's manifest lists
  as made by llm-embedder (:func:`remove_made`), and the temporary files of dead runs only when
  their name carries a token the library made (``fileio.temporary_name``);
- a resumable output continues only when its manifest matches in full
  (:func:`llm_embedder.freshness.resume_partial`); otherwise the error says what changed and
  ``restart`` starts over.

Every output gets a small manifest: the command that made it, a digest of each input file and the
settings.  A file's manifest is a hidden neighbour (``.NAME.manifest.json``); a folder's lies inside
it (``llm-embedder-output.json``) and also lists what the command made there (``made``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_embedder import fileio, versioned
from llm_embedder.errors import InputError
from llm_embedder.fileio import clean_dead_temporaries, temporary_pid, write_json
from llm_embedder.fingerprint import file_digest

FOLDER_MANIFEST = "llm-embedder-output.json"
FILE, FOLDER, WHOLE = "file", "folder", "whole"
"""Output kinds: a file; a folder written file by file (``--overwrite`` adds to a folder it did not
write); a folder written as one unit (never into a folder it did not write)."""


def manifest_path(path: str | Path, is_dir: bool = False) -> Path:
    path = Path(path)
    return path / FOLDER_MANIFEST if is_dir else path.with_name(f".{path.name.lstrip('.')}.manifest.json")


def read_manifest(path: str | Path, is_dir: bool = False) -> dict[str, Any] | None:
    file = manifest_path(path, is_dir)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("command"), str) else None


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two manifests, one short phrase per input or setting."""
    found = []
    for section in ("inputs", "settings"):
        a, b = old.get(section) or {}, new.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                if section == "inputs":
                    found.append(f"input {key} changed")
                else:
                    found.append(f"{key}: {json.dumps(a.get(key))} -> {json.dumps(b.get(key))}")
    return found


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


# ---------------------------------------------------------------------------- what a command declares
@dataclass(frozen=True)
class Port:
    """A path option of a command: an input (``kind`` None) or an output of ``kind`` FILE, FOLDER or WHOLE.

    ``role`` says what the option holds (``records``, ``corpus``, ``encoder``, ``recipe`` ...): the
    property test gives a sample of that role.  ``members``: the names a folder output writes at
    its top.  ``paths`` gives the value(s) when they are not the option's own (an output folder named
    in a recipe); ``inside`` gives the inputs a file names (a recipe's datasets and model).
    ``setting`` marks an output given as ``--set KEY=PATH`` (run's ``work_dir``).
    """

    option: str
    role: str
    kind: str | None = None
    members: tuple[str, ...] = ()
    recognise: Callable[[Path], bool] | None = None
    paths: Callable[[argparse.Namespace], list[Any]] | None = None
    inside: Callable[[argparse.Namespace, Path], Iterable[tuple[str, Path]]] | None = None
    setting: str | None = None

    @property
    def dest(self) -> str:
        return self.option.lstrip("-").replace("-", "_")

    @property
    def name(self) -> str:
        return self.dest.replace("_", " ")

    def values(self, args: argparse.Namespace) -> list[str]:
        if self.paths is not None:
            found = self.paths(args)
        else:
            value = getattr(args, self.dest, None)
            found = [] if value is None else value if isinstance(value, list) else [value]
        return [str(v) for v in found if v not in (None, "")]

    def argv(self, path: str | Path) -> list[str]:
        """The arguments that give this output ``path`` (for the property test)."""
        if self.setting:
            return ["--set", f"{self.setting}={path}"]
        return [str(path)] if not self.option.startswith("-") else [self.option, str(path)]


@dataclass(frozen=True)
class Spec:
    """Every path option of ``command``.  ``examples``: argument lists of small valid calls less
    their outputs, ``{role}`` standing for a sample input of that role (the property test runs each).
    ``seal``: folder outputs get their manifest at once (a server writes as it goes)."""

    command: str
    ports: tuple[Port, ...] = ()
    examples: tuple[tuple[str, ...], ...] = ((),)
    seal: bool = False

    @property
    def outputs(self) -> tuple[Port, ...]:
        return tuple(p for p in self.ports if p.kind is not None)

    @property
    def inputs(self) -> tuple[Port, ...]:
        return tuple(p for p in self.ports if p.kind is None)


def path_of(value: str) -> Path | None:
    """The existing local path a value names: itself, or the path in ``dense:PATH`` / ``LABEL=dense:PATH``."""
    for text in (value, value.partition("=")[2]):
        text = text.removeprefix("dense:")
        if text and _exists(Path(text)):
            return Path(text)
    return None


@dataclass
class Target:
    path: Path
    kind: str
    option: str
    members: tuple[str, ...] = ()
    recognise: Callable[[Path], bool] | None = None
    before: tuple[bool, Any, bytes | None] = (False, None, None)
    """Whether it existed at declaration, its (size, mtime, inode), and its manifest's bytes then."""


@dataclass
class Declaration:
    command: str
    inputs: list[tuple[str, Path]]
    targets: list[Target] = field(default_factory=list)
    overwrite: bool = False
    can_overwrite: bool = True
    """Whether the command has an ``--overwrite`` option (``run`` and ``serve`` have none)."""

    def target(self, path: Path) -> Target | None:
        path = Path(os.path.abspath(path))
        return next((t for t in self.targets if Path(os.path.abspath(t.path)) == path), None)

    def covers(self, path: Path) -> bool:
        """Whether ``path`` lies in a declared output: the output itself, inside a folder output, or a
        hidden work file beside it (``.NAME.*``: manifest, partial, temporary, build folder)."""
        path = Path(os.path.abspath(path))
        for target in self.targets:
            root = Path(os.path.abspath(target.path))
            for place in (path, *path.parents):
                if place == root and (place == path or target.kind != FILE):
                    return True
                if place.parent == root.parent and place.name.startswith(f".{root.name}."):
                    return True
        return path.is_relative_to(os.path.abspath(fileio.cache_dir()))


_ACTIVE: Declaration | None = None


def active() -> Declaration | None:
    return _ACTIVE


def inputs_of(spec: Spec, args: argparse.Namespace) -> list[tuple[str, Path]]:
    """``(name, path)`` of every input of a parsed command line, those named inside its files included."""
    inputs: list[tuple[str, Path]] = []
    for port in spec.inputs:
        for value in port.values(args):
            path = path_of(value)
            if path is None:
                continue
            inputs.append((port.name, path))
            if port.inside is not None:
                inputs += list(port.inside(args, path))
    return inputs


def declare(spec: Spec, args: argparse.Namespace) -> Declaration:
    """Check every output of ``spec.command`` against its inputs and what is on disk, before anything
    is read or written at length; until :func:`release`, a write elsewhere is an error."""
    global _ACTIVE
    command = spec.command
    inputs = inputs_of(spec, args)
    overwrite, can_overwrite = bool(getattr(args, "overwrite", False)), hasattr(args, "overwrite")
    declaration = Declaration(command, inputs, overwrite=overwrite, can_overwrite=can_overwrite)
    for port in spec.outputs:
        kind = port.kind or FILE
        for value in port.values(args):
            path = Path(value)
            rules = {"kind": kind, "members": port.members, "recognise": port.recognise}
            check(path, command, inputs, overwrite=overwrite, option=port.option, can_overwrite=can_overwrite, **rules)
            before = _state(path, kind != FILE)
            declaration.targets.append(Target(path, kind, port.option, port.members, port.recognise, before))
    _ACTIVE = declaration
    fileio.WRITE_GUARD = _guard
    if spec.seal:
        for target in declaration.targets:
            if target.kind != FILE:
                claim(target.path, command).seal()
    return declaration


def release(failed: bool = False) -> None:
    """End the command's declaration; after a failure, take back the manifests of outputs never written."""
    global _ACTIVE
    declaration, _ACTIVE = _ACTIVE, None
    fileio.WRITE_GUARD = None
    if not failed or declaration is None:
        return
    for target in declaration.targets:
        existed, stat, manifest = target.before
        if target.kind == FILE:
            if _state(target.path, False)[1] == stat:  # the file itself is as it was
                file = manifest_path(target.path)
                if manifest is None:
                    file.unlink(missing_ok=True)
                elif not file.is_file() or file.read_bytes() != manifest:
                    file.write_bytes(manifest)
        elif not existed and target.path.is_dir() and {p.name for p in target.path.iterdir()} <= {FOLDER_MANIFEST}:
            manifest_path(target.path, True).unlink(missing_ok=True)
            target.path.rmdir()


def _state(path: Path, is_dir: bool) -> tuple[bool, Any, bytes | None]:
    try:
        stat = path.stat()
        signature: Any = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    except OSError:
        signature = None
    try:
        manifest = manifest_path(path, is_dir).read_bytes()
    except OSError:
        manifest = None
    return _exists(path), signature, manifest


def _guard(path: Path) -> None:
    declaration = _ACTIVE
    if declaration is not None and not declaration.covers(path):
        raise RuntimeError(
            f"`llm-embedder {declaration.command}` writes {path}, which it did not declare as an output "
            "(a bug: please report it)"
        )


# ---------------------------------------------------------------------------- the checks
def check(
    path: str | Path,
    command: str,
    inputs: Iterable[tuple[str, Path]],
    *,
    overwrite: bool = False,
    kind: str = FILE,
    members: tuple[str, ...] = (),
    recognise: Callable[[Path], bool] | None = None,
    option: str | None = None,
    can_overwrite: bool = True,
) -> set[str]:
    """Refuse ``path`` as an output of ``command`` by the module's rules (nothing is written);
    returns the ``members`` the command may write there."""
    path = Path(path)
    resolved = path.resolve()
    for name, source in inputs:
        source = Path(source)
        origin = source.resolve()
        if _same_path(path, source) or resolved == origin:
            raise InputError(path, None, None, f"the output is the {name} {source}; choose another output path")
        if origin.is_relative_to(resolved):
            raise InputError(path, None, None, f"the output holds the {name} {source}; choose another output path")
        if source.is_dir() and resolved.is_relative_to(origin):
            raise InputError(path, None, None, f"the output is inside the {name} {source}; choose another output path")
    for parent in path.parents:
        if _exists(parent):
            if not parent.is_dir():
                raise InputError(path, None, None, f"{parent} is a file, not a folder; choose another output path")
            break
    flag = f"{option} " if option else ""
    if kind == FILE and path.is_dir():
        message = f"an existing folder, and {flag}names a file; a folder is never replaced: give a file path"
        raise InputError(path, None, None, message)
    if kind != FILE and _exists(path) and not path.is_dir():
        message = f"an existing file, and {flag}names a folder; a file is never replaced: give a folder path"
        raise InputError(path, None, None, message)
    if not _exists(path):
        return set(members)
    if kind == FILE:
        old = read_manifest(path)
        ours = (old is not None and old["command"] == command) or (recognise is not None and recognise(path))
        if not ours and not overwrite:
            hint = " or pass --overwrite to replace it" if can_overwrite else ""
            message = f"an existing file that `llm-embedder {command}` did not write; choose another output path{hint}"
            raise InputError(path, None, None, message)
        return set()
    return _check_folder(path, command, overwrite, kind, members, recognise, can_overwrite)


def _check_folder(
    path: Path,
    command: str,
    overwrite: bool,
    kind: str,
    members: tuple[str, ...],
    recognise: Callable | None,
    can_overwrite: bool = True,
) -> set[str]:
    old = read_manifest(path, True)
    if old is None and _exists(path / FOLDER_MANIFEST):
        raise InputError(path / FOLDER_MANIFEST, None, None, "not a manifest llm-embedder wrote; move it away")
    if old is not None and old["command"] != command:
        raise InputError(
            path,
            None,
            None,
            f"an existing folder that `llm-embedder {command}` did not write (it holds the output of "
            f"`llm-embedder {old['command']}`); choose another output path",
        )
    ours = old is not None or (recognise is not None and recognise(path))
    # a folder that holds only what a killed versioned write left (a first version without its pointer,
    # whose manifest comes at the end) is as good as empty: the next write removes those leftovers
    if not ours and set(path.iterdir()) - set(versioned.leftovers(path)):
        if kind == WHOLE:
            raise InputError(
                path,
                None,
                None,
                f"an existing folder that `llm-embedder {command}` did not write; its output is written as a "
                "whole folder, so choose a new or empty folder",
            )
        if not overwrite:
            hint = " or pass --overwrite to add to it (its files are kept)" if can_overwrite else ", new or empty"
            raise InputError(
                path,
                None,
                None,
                f"an existing folder that `llm-embedder {command}` did not write; choose another output path{hint}",
            )
    if old is not None and isinstance(old.get("made"), list):
        made = set(old["made"])
    else:  # an earlier output from before manifests listed what they made: its members are its own
        made = set(members) if ours else set()
    for member in members:
        if _exists(path / member) and member not in made:
            raise InputError(
                path / member,
                None,
                None,
                f"`llm-embedder {command}` writes {member} in {path} but did not write this one, and never "
                "replaces it; move it away or choose another output path",
            )
    return set(members) | made


# ---------------------------------------------------------------------------- claiming an output
@dataclass
class Output:
    """A target a command may write; :meth:`seal` records its manifest."""

    path: Path
    manifest: dict[str, Any]
    is_dir: bool = False
    made: set[str] = field(default_factory=set)

    def seal(self, path: str | Path | None = None) -> None:
        manifest = dict(self.manifest)
        if self.is_dir and path is None:
            manifest["made"] = sorted(self.made)
        write_json(manifest_path(self.path if path is None else path, self.is_dir and path is None), manifest)


def claim(
    path: str | Path,
    command: str,
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
    settings: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    is_dir: bool = False,
    recognise: Callable[[Path], bool] | None = None,
    members: tuple[str, ...] = (),
    whole: bool = False,
) -> Output:
    """Check that ``command`` may write ``path`` (see the module doc for the rules) and return it.

    ``inputs`` name the files the output is made from (hashed by content into its manifest); while a
    command's declaration is active, all its declared inputs are checked too, its declared kind and
    members apply, and a path it did not declare is refused.  ``recognise`` tells an earlier output of
    this command that predates manifests (e.g. an index folder).
    """
    path = Path(path)
    inputs = {k: Path(v) for k, v in (inputs or {}).items() if v is not None}
    kind = WHOLE if whole else FOLDER if is_dir else FILE
    checked = list(inputs.items())
    declaration = _ACTIVE
    if declaration is not None:
        target = declaration.target(path)
        if target is None and not declaration.covers(path):
            raise RuntimeError(
                f"`llm-embedder {declaration.command}` claims {path}, which it did not declare as an output "
                "(a bug: please report it)"
            )
        checked += declaration.inputs
        overwrite = overwrite or (target is not None and declaration.overwrite)
        if target is not None:
            kind, members = target.kind, target.members or members
            recognise = target.recognise or recognise
    can_overwrite = declaration is None or declaration.can_overwrite
    made = check(
        path,
        command,
        checked,
        overwrite=overwrite,
        kind=kind,
        members=members,
        recognise=recognise,
        can_overwrite=can_overwrite,
    )
    manifest = {
        "command": command,
        "inputs": {k: file_digest(v) if v.exists() else None for k, v in inputs.items()},
        "settings": json.loads(json.dumps(dict(settings or {}), default=str)),
    }
    # Temporary files of runs that died (a kill mid-write) go before anything else is judged.
    clean_dead_temporaries(path if kind != FILE else path.parent, recursive=kind != FILE)
    return Output(path, manifest, kind != FILE, made)


# ---------------------------------------------------------------------------- what a folder lists as made
_SIDECAR = re.compile(r"\.(inputs|manifest\.json|(partial|part-\d+-of-\d+)(\.manifest\.json|\.digests)?|old)$")


def sidecars(path: Path) -> list[Path]:
    """The hidden work files llm-embedder keeps beside ``path`` (manifest, partial, input stamp,
    temporaries of dead runs)."""
    prefix = f".{path.name}."
    if not path.parent.is_dir():
        return []
    found = []
    for other in path.parent.iterdir():
        if not other.name.startswith(prefix):
            continue
        rest = other.name[len(prefix) - 1 :]
        pid = temporary_pid(other.name)
        if _SIDECAR.fullmatch(rest) or (pid is not None and other.name.startswith(prefix)):
            found.append(other)
    return found


def record_made(folder: str | Path, names: Iterable[str], command: str = "pipeline") -> None:
    """Note in ``folder``'s manifest, before writing them, that ``names`` (relative paths) are made
    by llm-embedder: a restart may remove them, and nothing else (:func:`remove_made`)."""
    folder = Path(folder)
    manifest = read_manifest(folder, True) or {"command": command, "inputs": {}, "settings": {}}
    made = set(manifest.get("made") or [])
    wanted = made | {str(n) for n in names}
    if wanted != made or not manifest_path(folder, True).is_file():
        for name in wanted - made:
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"{name!r}: a made path is relative and stays in its folder")
        folder.mkdir(parents=True, exist_ok=True)
        write_json(manifest_path(folder, True), {**manifest, "made": sorted(wanted)})


def made_here(folder: str | Path) -> bool:
    """Whether ``folder`` (or a folder in it) holds a manifest listing what llm-embedder made."""
    return any(read_manifest(m.parent, True) is not None for m in Path(folder).rglob(FOLDER_MANIFEST))


def remove_made(folder: str | Path) -> list[Path]:
    """Remove what the manifests in ``folder`` (its own and those of folders in it) list as made, with
    their work files; the rest (a user's files) stays."""
    folder = Path(folder)
    removed: list[Path] = []
    manifests = sorted(folder.rglob(FOLDER_MANIFEST), key=lambda p: len(p.parts), reverse=True)
    for file in manifests:
        base = file.parent
        manifest = read_manifest(base, True)
        if manifest is None:
            continue
        for name in manifest.get("made") or []:
            if Path(name).is_absolute() or ".." in Path(name).parts:
                continue
            target = base / name
            for path in (target, *sidecars(target)):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif _exists(path):
                    path.unlink()
                else:
                    continue
                removed.append(path)
        file.unlink()
    return removed
