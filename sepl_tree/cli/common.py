"""Option aliases and helpers shared by the command modules of :mod:`sepl_tree.cli`.

A command parses, calls the library and prints; a :class:`~sepl_tree.errors.SeplError` raised
below it becomes one red line on stderr and exit code 1 (2 for an unknown name), never a
traceback (see :func:`run_guarded`).
"""

from __future__ import annotations

import contextlib
import os
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sepl_tree.classes import default_class_names
from sepl_tree.errors import SeplError
from sepl_tree.label_maps import IGNORE
from sepl_tree.metrics import CONVENTIONS
from sepl_tree.outputs import release_folders
from sepl_tree.plugins import PluginHost, UnknownName, load_host, looks_like_plugin_file

__all__ = [
    "CONFIG_TABLES",
    "ConfigOpt",
    "ConventionName",
    "ConventionOpt",
    "DatasetConfigOpt",
    "Executor",
    "ExecutorOpt",
    "IdsOpt",
    "ImagesOpt",
    "MissingMasks",
    "MissingMasksOpt",
    "NumClassesOpt",
    "OutOpt",
    "OverwriteOpt",
    "ParamOpt",
    "PluginOpt",
    "RayAddressOpt",
    "ReaderParamOpt",
    "WorkersOpt",
    "absolute_plugin_paths",
    "class_table",
    "config_class_names",
    "config_option",
    "config_tables",
    "console",
    "delta",
    "err_console",
    "execution_log",
    "executor_options",
    "finish_folder",
    "fmt",
    "get_host",
    "image_progress",
    "input_ids",
    "parse_params",
    "per_second",
    "print_scores",
    "progress_bar",
    "read_ids",
    "run_guarded",
    "say_checking",
    "say_convention",
    "warn",
    "warn_if_labels_unused",
    "warn_kept_without_masks",
    "warn_made_again",
]

console = Console()
err_console = Console(stderr=True)


class Executor(str, Enum):
    """Where per-image jobs run."""

    process = "process"
    serial = "serial"
    ray = "ray"


class MissingMasks(str, Enum):
    """What to do with an id that has a pseudo-label but no masks."""

    error = "error"
    keep = "keep"


PluginOpt = Annotated[list[str] | None, typer.Option(
    "--plugin", metavar="FILE.py|MODULE", help="A plugin .py file or importable module (repeatable).", show_default=False)]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", metavar="NAME=VALUE", help="A parameter of the strategy or reader (repeatable).", show_default=False)]
ReaderParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", metavar="NAME=VALUE", help="A parameter of the reader (repeatable).", show_default=False)]
NumClassesOpt = Annotated[int, typer.Option(
    "--num-classes", min=2, max=255, metavar="K", help="Classes K, background included (VOC 21, COCO 81).")]
IdsOpt = Annotated[Path | None, typer.Option(
    "--ids", metavar="FILE", help="A text file with one image id per line, to restrict the run.", show_default=False)]
WorkersOpt = Annotated[int, typer.Option("--workers", "-j", min=1, metavar="N", help="Worker processes.")]
ExecutorOpt = Annotated[Executor, typer.Option("--executor", help="Local process pool, serial, or a Ray cluster.")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", metavar="HOST:PORT", help="Join this Ray cluster (with --executor ray); default: a local Ray.",
    show_default=False)]
MissingMasksOpt = Annotated[MissingMasks, typer.Option(
    "--missing-masks", help="An id without masks: an error, or keep its pseudo-label.")]
#: ``--convention``'s choices: the names of :data:`sepl_tree.metrics.CONVENTIONS`.
ConventionName = Enum("ConventionName", [(name.replace("-", "_"), name) for name in CONVENTIONS], type=str)
ConventionOpt = Annotated[ConventionName, typer.Option(
    "--convention", help="Score as a baseline's own script does, to reproduce its number: "
    + "; ".join(f"{name}: {c.rule}" for name, c in CONVENTIONS.items() if name != "default")
    + " (README, Conventions).")]
ImagesOpt = Annotated[Path | None, typer.Option(
    "--images", "--image", metavar="DIR", show_default=False,
    help="Folder of the RGB images (<id>.jpg/.png), for pictures.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Rewrite outputs that already exist.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder of label PNGs.", show_default=False)]

#: Tables a ``--config`` file may hold besides option values: merged with the command line's
#: ``--param`` (the command line wins name by name) or read by the command.
CONFIG_TABLES = ("params", "reader_params", "class_names", "name")
#: Keys of the dataset presets (``configs/voc.toml``, ``configs/coco.toml``) that describe the
#: dataset for whoever reads the file: ``palette`` must be the colour map the outputs are written
#: with (the VOC one, :func:`sepl_tree.label_maps.voc_palette`); ``category_ids`` (COCO's id of
#: each class) is for ``coco-gt``'s users and changes nothing in a run.
DATASET_KEYS = ("palette", "category_ids")


def _check_palette(path: Path, palette: Any) -> None:
    from sepl_tree.label_maps import voc_palette

    try:
        same = len(palette) <= 256 and voc_palette(len(palette)).tolist() == palette
    except TypeError:
        same = False
    if not same:
        raise typer.BadParameter(f"{path}: palette: outputs are written with the VOC colour map "
                                 "(configs/voc.toml lists it); another palette is not supported")


def _config_key(option: Any) -> str:
    """An option's key in a ``--config`` file: its long name, dashes as underscores (``--num-classes``:
    ``num_classes``, ``eval --json``: ``json``)."""
    long = next((o for o in option.opts if o.startswith("--")), None)
    return long[2:].replace("-", "_") if long else option.name


def _load_config(ctx: typer.Context, path: Path | None, tables: tuple[str, ...], itself: str | None) -> Path | None:
    """``--config`` callback: the file's option values become the command's defaults.

    Options given on the command line still win; a key that is neither another option of the
    command (:func:`_config_key`; ``itself`` is the ``--config`` option's name) nor one of ``tables`` (of
    :data:`CONFIG_TABLES`) is an error naming the valid ones. The tables are kept in ``ctx.meta["config_tables"]``
    (see :func:`config_tables`).
    """
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise typer.BadParameter(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise typer.BadParameter(f"{path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"{path}: invalid TOML (not UTF-8 text, byte {exc.start})") from None
    options = {_config_key(p): p for p in ctx.command.params
               if getattr(p, "param_type_name", "") == "option" and p.name not in (itself, "help", "param", "plugin")}
    valid = sorted(options) + list(tables) + list(DATASET_KEYS)
    unknown = [key for key in data if key not in valid]
    if unknown:
        raise typer.BadParameter(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}")
    for key in sorted(data.keys() & options.keys()):
        if options[key].callback is None:  # (none has one; a callback might act, not only check)
            try:  # here, so that a bad value names the file, not only the option it stands for
                options[key].process_value(ctx, data[key])
            except typer.BadParameter as exc:
                raise typer.BadParameter(f"{path}: {key} = {data[key]!r}: {exc.message}") from None
            except (TypeError, ValueError) as exc:  # (click 8.1 converts a TOML list or number this way)
                raise typer.BadParameter(f"{path}: {key} = {data[key]!r}: {exc}") from None
    for key, kind in (("params", dict), ("reader_params", dict), ("class_names", list), ("name", str)):
        if key in data and not isinstance(data[key], kind):
            shape = {dict: "a table ([params] NAME = VALUE)", list: "a list of names", str: "a string"}[kind]
            raise typer.BadParameter(f"{path}: {key} must be {shape}, got {data[key]!r}")
    if "class_names" in data and not all(isinstance(name, str) for name in data["class_names"]):
        raise typer.BadParameter(f"{path}: class_names must be a list of names (strings)")
    if "palette" in data:
        _check_palette(path, data["palette"])
    ctx.default_map = {**(ctx.default_map or {}), **{options[k].name: v for k, v in data.items() if k in options}}
    ctx.meta["config_tables"] = {k: v for k, v in data.items() if k in tables}
    return path


def config_option(tables: tuple[str, ...], example: str) -> Any:
    """The ``--config FILE.toml`` option of a command whose preset may hold ``tables``."""

    def load(ctx: typer.Context, param: typer.CallbackParam, path: Path | None) -> Path | None:
        return _load_config(ctx, path, tables, param.name)

    return Annotated[Path | None, typer.Option(
        "--config", metavar="FILE.toml", is_eager=True, callback=load, show_default=False,
        help=f"A TOML preset (e.g. {example}): its values are the defaults, the command line wins.")]


ConfigOpt = config_option(CONFIG_TABLES, "configs/paper.toml")
#: ``--config`` of ``eval`` and ``compare``: a dataset preset (``configs/coco.toml``) sets K and
#: the class names the scores are printed with.
DatasetConfigOpt = config_option(("class_names", "name"), "configs/coco.toml")


def config_tables(ctx: typer.Context) -> dict[str, Any]:
    """The tables of the command's ``--config`` file (empty without one)."""
    return dict(ctx.meta.get("config_tables", {}))


def config_class_names(ctx: typer.Context, config: Path | None, num_classes: int) -> list[str]:
    """The class names of the command's ``--config`` (else the dataset preset's of K classes),
    checked against K before any work."""
    from sepl_tree.evaluate import class_names_for

    try:
        return class_names_for(num_classes, config_tables(ctx).get("class_names"))
    except SeplError as exc:
        raise SeplError(f"{config}: {exc} (--num-classes)") from None


def finish_folder(out: Path, manifest: str, settings: dict[str, Any], images: int, written: int,
                  made_again: int | None = None) -> None:
    """Mark ``out/manifest`` finished with its counts and say what was written (``convert``, ``coco-gt``);
    ``made_again``: of those written, the outputs made again because their inputs changed."""
    from sepl_tree.outputs import write_status

    counts = {"images": images, "written": written, "skipped_existing": images - written}
    if made_again is not None:
        counts["made_again_inputs_changed"] = made_again
    write_status(out, manifest, settings, "finished", counts=counts)
    console.print(f"{written} written, {images - written} skipped (existing; --overwrite to redo) in {out}/")


def class_table(title: str, counts: np.ndarray, images: np.ndarray, num_classes: int,
                names: list[str] | None = None) -> Table:
    """Per label value: images holding it and its share of all pixels (``names``: the classes',
    else the dataset preset's of K classes)."""
    names = names or default_class_names(num_classes)
    table = Table(title=title)
    for column in ("class", "images", "pixels %"):
        table.add_column(column, justify="left" if column == "class" else "right")
    total = max(int(counts.sum()), 1)
    rows = [(names[k], images[k], counts[k]) for k in range(num_classes) if images[k]]
    if images[IGNORE]:
        rows.append(("ignore (255)", images[IGNORE], counts[IGNORE]))
    for name, n_images, pixels in rows:
        table.add_row(escape(name), str(int(n_images)), f"{100 * pixels / total:.2f}")  # (a file's name: not markup)
    return table


T = TypeVar("T")


def run_guarded(func: Callable[[], T], resumes: bool = False) -> T:
    """Run a command body; user errors become one line on stderr and exit code 1, Ctrl-C one line
    and exit code 130 (``resumes``: the command's outputs are resumed by a rerun, and it says so)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit():  # the consoles were made at import: follow the width the command runs in
        console.width = err_console.width = int(columns)
    try:
        return func()
    except KeyboardInterrupt:
        err_console.print("interrupted" + ("; the outputs written so far are whole, and the same command resumes "
                                           "from them" if resumes else ""), highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except SeplError as exc:
        # The message is plain text (paths may hold brackets): escape it from rich's markup.
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, UnknownName) else 1) from None
    except OSError as exc:  # what the file system refuses where no check of ours named it (a full disk)
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"[red]error:[/red] {escape(where + (exc.strerror or str(exc)))}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        release_folders()


def executor_options(executor: str, ray_address: str | None, workers: int = 1) -> dict[str, Any]:
    """The keyword options :func:`sepl_tree.executors.execute` takes for ``executor``.

    ``ray`` without Ray installed is an error here, before any work. ``record`` is filled in by
    the run: write :func:`execution_log` of the options in the run log.
    """
    from sepl_tree.executors.record import ExecutionRecord

    options: dict[str, Any] = {"record": ExecutionRecord(executor, workers), "notify": warn}
    if executor != "ray":
        return options
    from sepl_tree.executors.ray import import_ray

    import_ray()
    return {**options, "ray_address": ray_address}


def execution_log(options: dict[str, Any]) -> dict[str, Any]:
    """What the executor did (executor, workers asked and used, cluster size), for a run log."""
    return options["record"].as_json()


#: From this many ids on, a line says that the checks before the first image are under way.
CHECKING_NOTE_IDS = 10_000


def say_checking(ids: list[str], what: str) -> None:
    """From :data:`CHECKING_NOTE_IDS` ids on, one line on stderr before the checks of ``what``
    (inputs there, outputs already done): at 100k ids they take seconds with nothing on screen."""
    if len(ids) >= CHECKING_NOTE_IDS:
        err_console.print(f"checking {len(ids)} ids ({escape(what)}) ...", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """One yellow line on stderr (above a progress bar, if one is showing)."""
    err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def note_unscored(gt: Path, scored: list[str], having: str) -> None:
    """Without ``--ids`` the inputs say what is scored: say so when the ground truth has more
    (``having``: what a scored image has, e.g. ``a prediction``).

    (A VOC ``SegmentationClass`` folder holds train and val: more than a folder of one split, so
    this is a note, not an error; ``--ids`` makes every listed image required.)
    """
    scored_ids = set(scored)
    others = sum(1 for p in gt.glob("*.png") if p.stem not in scored_ids)
    if others:
        console.print(f"note: scoring the {len(scored)} image(s) with {having}; {others} ground-truth file(s) "
                      f"in {gt} have none (--ids FILE requires {having} for every listed image)",
                      highlight=False, soft_wrap=True)


def inputs_changed(named: str, labels: Path | None) -> str:
    """The warning's cause of an out-of-date output: ``named`` inputs, and ``--labels`` when given."""
    return f"{named} or --labels changed" if labels is not None else f"{named} changed"


def out_of_date(stamps: dict[str, Any], folders: list[Path], overwrite: bool, changed: str,
                file_name: Callable[[str], str] = lambda i: f"{i}.png", example: Callable[[str], str] | None = None,
                what: str = "output(s)") -> frozenset[str]:
    """The ids of ``stamps`` (each id's input stamps, e.g.
    :meth:`~sepl_tree.inputs.InputReader.input_stamps`) whose outputs ``<folder>/<file_name(id)>``
    are out of date, said in one line per reason (``changed``: what changed, ``example`` an
    output's name, by default its file name); their outputs are removed, and what every output
    this run will make is made from is recorded (:func:`sepl_tree.outputs.refresh_made_from`).
    With ``overwrite`` (the outputs are gone already) nothing is out of date."""
    from sepl_tree.outputs import refresh_made_from

    stale = refresh_made_from(list(stamps), stamps, folders, file_name)  # (the ids in their order)
    if not overwrite:
        warn_made_again(stale, folders[0] if len(folders) == 1 else folders[0].parent, example or file_name, changed,
                        what)
    return frozenset(stale)


def warn_made_again(stale: dict[str, str], folder: Path, example: Callable[[str], str], changed: str,
                    what: str = "output(s)") -> None:
    """A line for each reason some outputs in ``folder`` are made again (``stale``: id -> reason,
    :func:`sepl_tree.outputs.refresh_made_from`; ``example`` names an id's output, ``changed`` says
    what changed)."""
    from sepl_tree.outputs import CHANGED

    for reason in dict.fromkeys(stale.values()):
        ids = [i for i, r in stale.items() if r == reason]
        if reason == CHANGED:
            warn(f"{len(ids)} {what} in {folder} are out of date (e.g. {example(ids[0])}: {changed} since it was "
                 "made): they are made again")
        else:
            warn(f"{len(ids)} {what} in {folder} have no line in its made_from.jsonl (e.g. {example(ids[0])}): what "
                 "they were made from is unknown, so they are made again")


def warn_kept_without_masks(kept: int, images: int) -> None:
    """The line saying that ``kept`` of ``images`` images had no masks and kept their pseudo-labels
    (``--missing-masks keep``): scores that look like "no change" may be "no masks"."""
    if kept:
        warn(f"{kept} of {images} images had no masks (--missing-masks keep): their pseudo-labels are kept as "
             "they are, and the scores count them" + ("; check the mask folder's names" if kept == images else ""))


def warn_if_labels_unused(inputs: Any, ids: list[str], labels: Path | None) -> None:
    """A warning line when ``--labels`` was given but the reader does not look at them (the
    ``png`` reader: label maps are read as stored), tried on the first id."""
    if labels is not None and ids and not inputs.reads_image_labels(ids[0]):
        warn(f"--labels {labels}: reader {inputs.reader.name!r} did not look at the image-level labels for "
             f"{ids[0]!r}; they may change nothing here")


def get_host(plugins: list[str] | None) -> PluginHost:
    """The plugin host with the user's ``--plugin`` files and modules loaded."""
    return load_host(plugins or [])


def absolute_plugin_paths(plugins: list[str] | None) -> tuple[str, ...]:
    """``--plugin`` values with file paths made absolute (module names are left as they are)."""
    return tuple(str(Path(p).resolve()) if looks_like_plugin_file(p) else p for p in plugins or ())


def parse_params(items: Iterable[str] | None) -> dict[str, str]:
    """``["t1=0.6", ...]`` -> ``{"t1": "0.6"}``; values are coerced later by the owner's declaration."""
    params: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        params[name.strip()] = value.strip()
    return params


def read_ids(path: Path | None) -> list[str] | None:
    """Image ids from a text file, one per line (blank lines and ``#`` comments skipped)."""
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SeplError(f"{path}: cannot read the id list ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise SeplError(f"{path}: the id list is not UTF-8 text (byte {exc.start})") from None
    ids = [line.split("#")[0].strip() for line in lines]
    ids = [i for i in ids if i]
    if not ids:
        raise SeplError(f"{path}: the id list is empty")
    seen: set[str] = set()
    for image_id in ids:
        if image_id.startswith("/") or ".." in image_id.split("/") or image_id == "." or "\0" in image_id:
            raise SeplError(f"{path}: id {image_id!r} would name a file outside the folders (an id is a file "
                            "name there, without its suffix)")
        if image_id in seen:
            raise SeplError(f"{path}: id {image_id!r} is listed twice (it would be processed and scored twice)")
        seen.add(image_id)
    return ids


def input_ids(inputs: Any, ids_file: Path | None, folder: Path | None = None) -> list[str]:
    """The ids of ``--ids``, else every id the reader of ``inputs`` (an
    :class:`~sepl_tree.inputs.InputReader`) finds; none is one line naming ``folder`` (default
    the pseudo-label folder), the reader's file pattern, and the reader its files look like."""
    found = read_ids(ids_file) or inputs.ids()
    if not found:
        from sepl_tree.readers.sniff import no_inputs

        raise no_inputs(folder or inputs.config.pseudo_dir, inputs.reader)
    return found


def progress_bar() -> Progress:
    """A rich progress bar with count, rate and ETA (off when ``SEPL_TREE_NO_PROGRESS`` is set)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=bool(os.environ.get("SEPL_TREE_NO_PROGRESS")),
    )


@contextlib.contextmanager
def image_progress(description: str, total: int) -> Iterator[Callable[[], None]]:
    """A :func:`progress_bar` over ``total`` images; yields ``step()``, to call once per image
    done (the bar shows the count, the rate since the start and the time left)."""
    with progress_bar() as bar:
        task, t0, done = bar.add_task(description, total=total, rate=""), time.perf_counter(), 0

        def step() -> None:
            nonlocal done
            done += 1
            bar.update(task, advance=1, rate=per_second(done, time.perf_counter() - t0))

        yield step


def per_second(images: int, seconds: float) -> str:
    """A progress bar's rate: ``images`` (every one it has moved over) in ``seconds``.

    >>> per_second(30, 2.0)
    '15.0 img/s'
    """
    return f"{images / max(seconds, 1e-9):.1f} img/s"


def fmt(value: float) -> str:
    """A score in percent with two decimals, ``n/a`` when undefined."""
    return "n/a" if np.isnan(value) else f"{value:.2f}"


def delta(after: float, before: float) -> str:
    """``after - before`` coloured for the terminal (green up, red down)."""
    if np.isnan(after) or np.isnan(before):
        return "n/a"
    d = after - before
    colour = "green" if d > 0 else "red" if d < 0 else "white"
    return f"[{colour}]{d:+.2f}[/{colour}]"


def say_convention(name: str) -> None:
    """The line under a table of scores taken as a baseline's script takes them (none for ``default``)."""
    if name != "default":
        rules = CONVENTIONS[name]
        console.print(f"scored as {rules.follows}: {rules.rule}", highlight=False)


def print_scores(title: str, names: list[str], columns: dict[str, Any]) -> None:
    """A per-class IoU table with one column per :class:`~sepl_tree.metrics.Scores`, means at the bottom."""
    table = Table(title=title)
    table.add_column("class")
    for label in columns:
        table.add_column(f"IoU {label}", justify="right")
    for k, name in enumerate(names):
        table.add_row(escape(name), *(fmt(s.iou[k]) for s in columns.values()))  # (a preset's name: not markup)
    table.add_section()
    for metric, attr in (("mIoU", "miou"), ("precision", "mean_precision"), ("recall", "mean_recall")):
        table.add_row(f"[bold]{metric}[/bold]", *(f"[bold]{fmt(getattr(s, attr))}[/bold]" for s in columns.values()))
    console.print(table)
    counted = sorted({s.miou_classes for s in columns.values()})
    if counted != [len(names)]:  # the mean leaves classes out: say how many it has
        which = ("only the classes the ground truth holds count" if any(s.averaged is not None for s in columns.values())
                 else "a class absent from both ground truth and prediction is left out")
        console.print(f"mIoU over {' / '.join(map(str, counted))} of {len(names)} classes ({which}; README, "
                      "Conventions)", highlight=False)
