"""Plugin loading: files, modules, entry points, duplicates, unknown names, the plugins command."""

import hashlib
import importlib.metadata
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sepl_tree import hookspecs
from sepl_tree.cli import app
from sepl_tree.errors import PluginError
from sepl_tree.files import read_png
from sepl_tree.plugins import AUTOLOAD_ENV, UnknownName, load_host
from sepl_tree.sample import Sample
from sepl_tree.masks import MaskSet

runner = CliRunner()

PLUGIN = textwrap.dedent(
    '''
    import numpy as np
    from sepl_tree import Strategy, hookimpl

    def keep_input(sample, offset: int = 0):
        """Return the pseudo-label unchanged (plus offset on class pixels).

        Parameters
        ----------
        offset
            Added to every class pixel.
        """
        out = sample.pseudo.copy()
        out[(out > 0) & (out < 255)] += offset
        return out

    @hookimpl
    def register_strategies(register):
        register(Strategy("{name}", keep_input))
    '''
)


def _write_plugin(path, name="keep-input"):
    path.write_text(PLUGIN.replace("{name}", name))
    return path


class FakeDist:
    """An installed distribution with one ``sepl_tree`` entry point, for ``importlib.metadata.distributions``."""

    def __init__(self, dist: str, version, entry_point: str, module: str) -> None:
        self.metadata, self.name, self._version = {"name": dist}, dist, version
        self.entry_points = [importlib.metadata.EntryPoint(entry_point, module, "sepl_tree")]

    @property
    def version(self) -> str:  # (a callable: a version that changes between runs)
        return self._version() if callable(self._version) else self._version


def _install(monkeypatch, *dists: FakeDist) -> None:
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: list(dists))


def test_builtins_are_registered_with_their_parameters():
    host = load_host(autoload=False)
    assert {"threshold", "official"} <= set(host.strategies)
    assert host.strategies["threshold"].source == "built-in"
    params = host.strategy("threshold").params
    assert (params["t1"].default, params["t2"].default) == (0.5, 0.85)
    assert "png" in host.readers


def test_a_parameters_type_is_its_annotations_else_its_defaults():
    from sepl_tree.registry import Share, params_from_signature

    def rule(sample, t2: float = 1, most: int | None = None, share: Share = 0.5, flag: bool = False, name="x"):
        pass

    params = params_from_signature(rule, skip=1)
    assert {n: (p.type, p.default) for n, p in params.items()} == {
        "t2": (float, 1.0), "most": (int, None), "share": (float, 0.5), "flag": (bool, False), "name": (str, "x")}
    assert (params["t2"].coerce("0.9"), params["most"].coerce("3")) == (0.9, 3)  # not "expected int", not "3"


def test_parameter_types_survive_an_annotation_that_does_not_resolve(tmp_path):
    path = tmp_path / "fut.py"
    path.write_text(textwrap.dedent('''
        from __future__ import annotations
        from typing import TYPE_CHECKING
        from sepl_tree import Share, Strategy, hookimpl
        if TYPE_CHECKING:
            from sepl_tree import Sample  # a name only type checkers see

        def rule(sample: Sample, t2: float = 1, share: Share = 0.5, most: int | None = None,
                 low: Share | None = None):
            return sample.pseudo

        @hookimpl
        def register_strategies(register):
            register(Strategy("fut", rule))
        '''))
    params = load_host([str(path)], autoload=False).strategy("fut").params
    assert {n: (p.type, p.default, str(p.range) if p.range else None) for n, p in params.items()} == {
        "t2": (float, 1.0, None), "share": (float, 0.5, "[0, 1]"), "most": (int, None, None),
        "low": (float, None, "[0, 1]")}


def test_a_parameter_annotation_that_does_not_resolve_is_refused_not_read_as_unbounded(tmp_path):
    """(``Share`` imported inside a function, under ``from __future__ import annotations``: the
    annotation stayed a string, and the parameter registered as a float with no range.)"""
    path = tmp_path / "local.py"
    path.write_text(textwrap.dedent('''
        from __future__ import annotations
        from sepl_tree import Strategy, hookimpl

        def rule(sample, share: Share = 0.5):
            return sample.pseudo

        @hookimpl
        def register_strategies(register):
            from sepl_tree import Share  # too late: the annotation is resolved in the module
            register(Strategy("local", rule))
        '''))
    with pytest.raises(Exception) as caught:
        load_host([str(path)], autoload=False)
    assert "parameter 'share': its annotation 'Share' does not resolve in the function's module" in str(caught.value)


def test_a_partial_registers_with_its_parameters():
    import functools

    from sepl_tree.registry import Strategy

    def rule(sample, t: float = 0.3, extra: int = 0):
        return sample.pseudo

    strategy = Strategy("p", functools.partial(rule, extra=2))
    assert {n: (p.type, p.default) for n, p in strategy.params.items()} == {"t": (float, 0.3), "extra": (int, 2)}


@pytest.mark.parametrize("signature, problem", [
    ("flag: int = True", "parameter 'flag': its default True is a bool, but its annotation says int"),
    ("x: int = 0.5", "parameter 'x': its default does not fit its annotation: expected int, got 0.5"),
    ("x: Share = 2.0", "parameter 'x': its default does not fit its annotation: must be in [0, 1], got 2.0"),
    ("x=None", "parameter 'x': a default of None needs an annotation saying the type, e.g. x: float | None = None"),
    ("x=(1, 2)", "parameter 'x': its default (1, 2) is a tuple; a parameter is a bool, int, float or str"),
])
def test_a_parameter_sepl_tree_cannot_take_from_the_command_line_is_refused_when_registered(signature, problem):
    from sepl_tree.registry import Share, Strategy

    namespace = {"Share": Share}
    exec(f"def rule(sample, {signature}):\n    return sample.pseudo", namespace)
    with pytest.raises(TypeError, match="^rule: " + re.escape(problem) + "$"):
        Strategy("r", namespace["rule"])


def test_a_function_without_the_fixed_arguments_is_refused_when_registered():
    from sepl_tree.registry import Reader, Strategy

    with pytest.raises(TypeError, match=r"\.read: its first 3 parameter\(s\), without defaults, receive folder, "
                                        r"image_id and ctx; got \(folder, image_id, bg=0.15\)$"):
        def read(folder, image_id, bg=0.15):
            return None
        Reader("r", read)
    with pytest.raises(TypeError, match=r"\.rule: its first 1 parameter\(s\), without defaults, receive the sample"):
        def rule(t1=0.5):
            return None
        Strategy("s", rule)


def test_a_plugin_that_marks_no_hook_says_so(tmp_path):
    path = tmp_path / "unmarked.py"
    path.write_text("from sepl_tree import Strategy\n\ndef register_strategies(register):\n    pass\n")
    with pytest.raises(PluginError) as err:
        load_host([str(path)], autoload=False)
    assert str(err.value) == (f"file {path}: implements no hook (register_strategies is not marked @hookimpl; "
                              "from sepl_tree import hookimpl)")


def test_a_module_name_that_is_a_file_here_says_to_pass_the_file(tmp_path, monkeypatch):
    _write_plugin(tmp_path / "here_plugin.py", "here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    with pytest.raises(PluginError, match=r"No module named 'here_plugin'; for the file, pass --plugin here_plugin.py$"):
        load_host(["here_plugin"], autoload=False)


def test_an_installed_plugin_given_again_as_a_file_says_how_to_choose(tmp_path, monkeypatch):
    path = _write_plugin(tmp_path / "twice_plugin.py", "twice")
    monkeypatch.syspath_prepend(str(tmp_path))

    _install(monkeypatch, FakeDist("sepl-twice", "0.1", "twice", "twice_plugin"))
    with pytest.raises(PluginError) as err:
        load_host([str(path)])
    assert str(err.value) == (f"strategy 'twice' is registered twice: by entry point twice (sepl-twice 0.1) and by "
                              f"file {path} (installed, and given with --plugin? drop --plugin, or set {AUTOLOAD_ENV}=1)")
    sys.modules.pop("twice_plugin", None)


def test_a_reader_suffix_with_a_path_separator_is_refused():
    from sepl_tree.registry import Reader

    with pytest.raises(TypeError, match=r"^reader 'cam': suffix '/cam.npz' holds a path separator; .*give list_ids"):
        Reader("cam", lambda folder, image_id, ctx: None, suffix="/cam.npz")
    with pytest.raises(TypeError, match=r"^reader 'cam': an empty suffix lists no ids"):
        Reader("cam", lambda folder, image_id, ctx: None, suffix="")


def test_a_reader_suffix_is_matched_literally(tmp_path):
    from sepl_tree.registry import Reader

    for name in ("a[1].npz", "b.npz", "c[1]x.npz"):
        (tmp_path / name).write_bytes(b"")
    assert Reader("r", lambda folder, image_id, ctx: None, suffix="[1].npz").ids(tmp_path) == ["a"]


def test_file_plugin_is_loaded_and_works(tmp_path):
    host = load_host([str(_write_plugin(tmp_path / "p.py"))], autoload=False)
    entry = host.strategies["keep-input"]
    assert entry.source == f"file {tmp_path / 'p.py'}"
    assert entry.item.description == "Return the pseudo-label unchanged (plus offset on class pixels)."
    assert entry.item.params["offset"].help == "Added to every class pixel."
    sample = Sample(np.array([[0, 1, 255]], np.uint8), MaskSet.empty(1, 3))
    assert entry.item.select(sample, offset=2).tolist() == [[0, 3, 255]]


def test_module_plugin_is_loaded(tmp_path, monkeypatch):
    _write_plugin(tmp_path / "my_sepl_plugin.py", "from-module")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = load_host(["my_sepl_plugin"], autoload=False)
    assert host.strategies["from-module"].source == "module my_sepl_plugin"
    sys.modules.pop("my_sepl_plugin", None)


def test_entry_point_plugin_is_loaded_unless_disabled(tmp_path, monkeypatch):
    _write_plugin(tmp_path / "ep_plugin.py", "from-entry-point")
    monkeypatch.syspath_prepend(str(tmp_path))

    _install(monkeypatch, FakeDist("sepl-ep-demo", "1.2.3", "ep", "ep_plugin"))
    host = load_host()
    source = host.strategies["from-entry-point"].source
    assert "entry point" in source and "sepl-ep-demo" in source and "1.2.3" in source
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    assert "from-entry-point" not in load_host().strategies
    sys.modules.pop("ep_plugin", None)


def test_run_json_records_the_entry_point_and_module_plugins_it_used(tmp_path, monkeypatch):
    """(A plugin that changes version, or a module whose file changes, is another setting.)"""
    import json

    from tests.helpers import write_dataset

    entry = _write_plugin(tmp_path / "ep_plugin.py", "from-entry-point")
    module = _write_plugin(tmp_path / "my_mod_plugin.py", "from-module")
    monkeypatch.syspath_prepend(str(tmp_path))
    version = {"now": "1.2.3"}
    _install(monkeypatch, FakeDist("sepl-ep-demo", lambda: version["now"], "ep", "ep_plugin"))
    pseudo_dir, masks_dir, _ = write_dataset(tmp_path / "d", {"a": (np.ones((4, 4), np.uint8), np.ones((1, 4, 4), bool),
                                                                    None)})

    def run(strategy, out, *extra):
        return runner.invoke(app, ["run", "--strategy", strategy, "--pseudo-labels", str(pseudo_dir), "--masks",
                                   str(masks_dir), "--out", str(tmp_path / out), *extra], env={"COLUMNS": "300"})

    assert run("from-entry-point", "ep").exit_code == 0
    plugins = json.loads((tmp_path / "ep" / "run.json").read_text())["settings"]["plugins"]
    assert plugins == [{"plugin": "entry point ep (sepl-ep-demo 1.2.3)", "provides": "strategy from-entry-point",
                        "sha1": hashlib.sha1(entry.read_bytes()).hexdigest()}]
    entry.write_text(entry.read_text() + "\n# edited in place, as in an editable install: the same version\n")
    result = run("from-entry-point", "ep")
    assert result.exit_code == 1 and "made with other settings" in result.output and "sha1" in result.output
    version["now"] = "1.3.0"
    result = run("from-entry-point", "ep")
    assert result.exit_code == 1 and "made with other settings" in result.output and "1.3.0" in result.output
    assert run("from-module", "mod", "--plugin", "my_mod_plugin").exit_code == 0
    plugins = json.loads((tmp_path / "mod" / "run.json").read_text())["settings"]["plugins"]
    assert plugins == [{"plugin": "my_mod_plugin", "sha1": hashlib.sha1(module.read_bytes()).hexdigest()}]
    assert run("threshold", "builtin").exit_code == 0  # a built-in needs no record
    assert json.loads((tmp_path / "builtin" / "run.json").read_text())["settings"]["plugins"] == []
    for name in ("ep_plugin", "my_mod_plugin"):
        sys.modules.pop(name, None)


def test_duplicate_name_names_both_plugins(tmp_path):
    a = _write_plugin(tmp_path / "a.py", "same")
    b = _write_plugin(tmp_path / "b.py", "same")
    with pytest.raises(PluginError, match=r"'same' is registered twice: by file .*a\.py and by file .*b\.py"):
        load_host([str(a), str(b)], autoload=False)
    with pytest.raises(PluginError, match="'threshold' is registered twice: by built-in and by file"):
        load_host([str(_write_plugin(tmp_path / "c.py", "threshold"))], autoload=False)


def test_misspelt_hook_fails_loudly(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from sepl_tree import hookimpl\n\n@hookimpl\ndef register_strategy(register):\n    pass\n")
    with pytest.raises(PluginError) as err:
        load_host([str(bad)], autoload=False)
    assert str(err.value) == (f"file {bad}: implements an unknown hook 'register_strategy'; the hooks are "
                              "register_readers, register_sam_models, register_strategies")


@pytest.mark.parametrize("hook, message", [
    ("def rule(sample, t1):\n    return sample.pseudo\n\n@hookimpl\ndef register_strategies(register):\n"
     "    register(Strategy('x', rule))", "register_strategies failed: TypeError: rule: parameter 't1' needs a default"),
    ("def rule(sample):\n    return sample.pseudo\n\n@hookimpl\ndef register_strategies(register):\n"
     "    register('x', rule)", "register() in register_strategies takes a Strategy, got str, function"),
    ("@hookimpl\ndef register_readers(register):\n    register(lambda folder, image_id, ctx: None)",
     "register() in register_readers takes a Reader, got function"),
    ("@hookimpl\ndef register_sam_models(register):\n    register('tiny')",
     "register() in register_sam_models takes a name and a value"),
    ("@hookimpl\ndef register_strategies(register):\n    raise ValueError('config missing')",
     "register_strategies failed: ValueError: config missing"),
    ("@hookimpl\ndef register_strategies(reg):\n    pass",
     "register_strategies(reg): Argument(s) {'reg'} are declared in the hookimpl but can not be found in the hookspec"),
])
def test_a_plugins_mistake_in_its_hook_is_one_line_naming_it(tmp_path, hook, message):
    bad = tmp_path / "bad.py"
    bad.write_text(f"from sepl_tree import Strategy, hookimpl\n\n{hook}\n")
    with pytest.raises(PluginError) as err:
        load_host([str(bad)], autoload=False)
    assert str(err.value).startswith(f"file {bad}: ") and message in str(err.value)
    result = runner.invoke(app, ["plugins", "--plugin", str(bad)], env={"COLUMNS": "400"})
    assert result.exit_code == 1 and (result.exception is None or isinstance(result.exception, SystemExit))
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: file {bad}: ") and message in lines[0]


def test_an_entry_points_fingerprint_is_its_own_distributions_module(tmp_path, monkeypatch):
    from sepl_tree.outputs import plugin_fingerprints

    a, b = _write_plugin(tmp_path / "epa_mod.py", "a"), _write_plugin(tmp_path / "epb_mod.py", "b")
    b.write_text(b.read_text() + "\n# another file\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _install(monkeypatch, FakeDist("dist-a", "1", "rules", "epa_mod"), FakeDist("dist-b", "1", "rules", "epb_mod"))
    [record] = plugin_fingerprints([], {"strategy b": "entry point rules (dist-b 1)"})
    assert record["sha1"] == hashlib.sha1(b.read_bytes()).hexdigest() != hashlib.sha1(a.read_bytes()).hexdigest()


def test_a_module_two_records_of_one_install_list_is_loaded_once(tmp_path, monkeypatch):
    _write_plugin(tmp_path / "dup_plugin.py", "dup")
    monkeypatch.syspath_prepend(str(tmp_path))
    _install(monkeypatch, FakeDist("sepl-dup", "0.1", "dup", "dup_plugin"), FakeDist("sepl-dup", "0.2", "dup", "dup_plugin"))
    assert load_host().strategies["dup"].source == "entry point dup (sepl-dup 0.1)"
    sys.modules.pop("dup_plugin", None)


def test_an_installed_plugin_that_fails_to_load_is_one_line_saying_how_to_skip_it(tmp_path, monkeypatch):
    _install(monkeypatch, FakeDist("sepl-bad-ep", "0.0.2", "bad_ep", "bad_ep_typo"))
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == ("error: entry point bad_ep (sepl-bad-ep 0.0.2): failed to load: "
                                     "ModuleNotFoundError: No module named 'bad_ep_typo' "
                                     f"(set {AUTOLOAD_ENV}=1 to skip installed plugins)")
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    assert runner.invoke(app, ["plugins"]).exit_code == 0


def test_missing_or_broken_plugin_file(tmp_path):
    with pytest.raises(PluginError, match="plugin file not found"):
        load_host([str(tmp_path / "nope.py")], autoload=False)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match="plugin failed to load: RuntimeError: boom"):
        load_host([str(broken)], autoload=False)


def test_unknown_strategy_lists_choices():
    host = load_host(autoload=False)
    with pytest.raises(UnknownName, match="valid choices: .*official.*threshold"):
        host.strategy("treshold")


def test_cli_unknown_strategy_exit_2(tmp_path):
    result = runner.invoke(app, ["run", "--strategy", "treshold", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "unknown strategy 'treshold'; valid choices:" in result.output and "threshold" in result.output
    assert not (tmp_path / "o" / "run.json").exists()


def test_cli_plugins_lists_file_plugin(tmp_path):
    path = _write_plugin(tmp_path / "p.py")
    result = runner.invoke(app, ["plugins", "--plugin", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "keep-input" in result.output and "offset=0" in result.output and "t1=0.5 in [0, 1]," in result.output
    assert "built-in" in result.output and "p.py" in result.output


def test_cli_plugins_name_shows_each_parameter_with_its_help(tmp_path):
    path = _write_plugin(tmp_path / "p.py")
    result = runner.invoke(app, ["plugins", "keep-input", "--plugin", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (f"strategy keep-input (file {path}): Return the pseudo-label unchanged (plus offset on "
                        "class pixels).")
    assert [cell.strip() for cell in next(line for line in lines if line.startswith("│ offset")).split("│")[1:-1]] == [
        "offset", "int", "0", "-", "Added to every class pixel."]
    threshold = runner.invoke(app, ["plugins", "threshold"], env={"COLUMNS": "250"})
    assert "[0, 1]" in threshold.output and "o_s, exceeds this." in threshold.output
    unknown = runner.invoke(app, ["plugins", "nope"])
    assert unknown.exit_code == 2 and "unknown strategy or reader 'nope'; valid choices:" in unknown.output


def test_every_hook_is_documented_implemented_and_tested():
    specs = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert specs and set(specs) <= set(hookspecs.__all__)
    host = load_host(autoload=False)
    tests = " ".join(p.read_text() for p in Path(__file__).resolve().parent.glob("*.py"))
    for name in specs:
        doc = getattr(hookspecs, name).__doc__
        assert doc and "register(" in doc, name  # the contract is written down
        assert getattr(host.pm.hook, name).get_hookimpls(), name  # a built-in implements it
        assert f"def {name}(register" in tests, name  # a test plugin implements it too


OLD_TREE_PLUGIN = textwrap.dedent(
    '''
    from sepl_tree import Strategy, hookimpl

    def old_style(sample, tau: float = 0.9):
        """Reads sample.tree as an attribute, as plugins did before sample.tree(tau)."""
        assert sample.tree is not None
        sample.tree.number_of_edges()
        return sample.pseudo.copy()

    @hookimpl
    def register_strategies(register):
        register(Strategy("old-style", old_style, needs_tree=True))
    '''
)


def _boat_sample(image_id="boat"):
    pseudo = np.array([[0, 0, 4, 4, 4, 0, 0, 0, 0, 0]], np.uint8)
    masks = np.array([[[1] * 9 + [0]], [[0] + [1] * 5 + [0] * 4]], bool)
    return Sample(pseudo, MaskSet(masks), 21, image_id=image_id)


def test_plugin_using_the_old_tree_attribute_gets_an_error_saying_what_changed(tmp_path):
    from sepl_tree.errors import StrategyError
    from sepl_tree.selection import bind_strategy

    path = tmp_path / "old.py"
    path.write_text(OLD_TREE_PLUGIN)
    selector = bind_strategy(load_host([str(path)], autoload=False), "old-style", {}, 21)
    with pytest.raises(StrategyError) as err:
        selector.apply(_boat_sample())
    message = str(err.value)
    assert message.startswith(f"strategy 'old-style' (file {path}) on image 'boat' failed: AttributeError")
    assert "sample.tree is now a method: call sample.tree(tau)" in message


@pytest.mark.parametrize("body, problem", [
    ("raise KeyError('k')", "failed: KeyError: 'k'"),
    ("return sample.pseudo[:, :3]", "returned (1, 3), expected an array of shape (1, 10)"),
    ("return [[0] * 10]", "returned list, expected an array of shape (1, 10)"),
    ("return sample.pseudo + 30", "returned label 30, outside 0..20 and 255"),
    ("return sample.pseudo.astype(float) + 0.5", "returned an array of float64; a label map holds the integers "
                                                  "0..20 or 255 (if its values are labels, return out.astype(np.uint8))"),
    ("return sample.pseudo.astype(float)", "returned an array of float64"),  # (whole values too: the dtype is the fault)
    ("return sample.pseudo.astype(np.int64) - 1", "returned label -1, outside 0..20 and 255"),
    ("return sample.pseudo.astype(np.int64) + 300", "returned label 304, outside 0..20 and 255"),
    ("return sample.pseudo > 0", "returned a bool array (a mask?); a label map holds the labels 0..20 or 255"),
    ("return paint_kept(sample, np.flatnonzero(sample.sepl_keep()))",
     "failed: ValueError: keep must be bool (2,), one flag per mask, got int64 (2,)"),
])
def test_a_strategy_that_fails_or_returns_a_non_label_map_is_named(tmp_path, body, problem):
    from sepl_tree.errors import StrategyError
    from sepl_tree.selection import bind_strategy

    path = tmp_path / "bad.py"
    path.write_text(textwrap.dedent(f'''
        import numpy as np
        from sepl_tree import Strategy, hookimpl, paint_kept

        def bad(sample):
            {body}

        @hookimpl
        def register_strategies(register):
            register(Strategy("bad", bad))
        '''))
    selector = bind_strategy(load_host([str(path)], autoload=False), "bad", {}, 21)
    with pytest.raises(StrategyError, match="^strategy 'bad' .*on image 'boat' ") as err:
        selector.apply(_boat_sample())
    assert problem in str(err.value)


def test_a_strategy_may_return_ignore_and_other_integer_dtypes():
    from sepl_tree.selection import Selector
    from sepl_tree.registry import Strategy

    def with_ignore(sample):
        out = sample.pseudo.astype(np.int32)
        out[0, 0] = 255
        return out

    out = Selector(Strategy("ignore", with_ignore), {}).apply(_boat_sample())
    assert out.dtype == np.uint8 and out.tolist() == [[255, 0, 4, 4, 4, 0, 0, 0, 0, 0]]


READER_PLUGIN = textwrap.dedent(
    '''
    import numpy as np
    from sepl_tree import Reader, hookimpl

    def read_npy_label(folder, image_id, ctx, shift: int = 0):
        """Label maps saved with np.save as <id>.npy.

        Parameters
        ----------
        shift
            Added to every class pixel.
        """
        label = np.load(folder / f"{image_id}.npy").astype(np.uint8)
        label[(label > 0) & (label < 255)] += shift
        return label

    @hookimpl
    def register_readers(register):
        register(Reader("npy-label", read_npy_label, suffix=".npy"))
    '''
)


def test_reader_plugin_file_reads_a_new_format_through_run(tmp_path):
    from tests.helpers import write_dataset

    pseudo = np.zeros((6, 8), np.uint8)
    pseudo[1:4, 1:5] = 1
    masks = np.zeros((1, 6, 8), bool)
    masks[0, 1:4, 1:6] = True  # o_s = 12/15 > 0.5: kept
    pseudo_dir, masks_dir, _ = write_dataset(tmp_path / "d", {"a": (pseudo, masks, None)})
    npy_dir = tmp_path / "npy"
    npy_dir.mkdir()
    np.save(npy_dir / "a.npy", pseudo)
    (tmp_path / "r.py").write_text(READER_PLUGIN)
    host = load_host([str(tmp_path / "r.py")], autoload=False)
    assert host.readers["npy-label"].source == f"file {tmp_path / 'r.py'}" and "shift" in host.reader("npy-label").params
    outs = {}
    for name, folder, extra in (("png", pseudo_dir, []), ("npy-label", npy_dir, ["--plugin", str(tmp_path / "r.py")])):
        out = tmp_path / f"out-{name}"
        result = runner.invoke(app, ["run", "--reader", name, "--pseudo-labels", str(folder), "--masks", str(masks_dir),
                                     "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        outs[name] = read_png(out / "a.png")
    assert np.array_equal(outs["png"], outs["npy-label"]) and outs["png"][1:4, 1:6].tolist() == [[1] * 5] * 3


@pytest.mark.parametrize("k", [1, 256])
def test_binding_a_strategy_for_a_class_count_the_cli_refuses_is_an_error(k):
    """(The API took K = 256, whose class 255 is the ignore value.)"""
    from sepl_tree.errors import SeplError
    from sepl_tree.plugins import load_host
    from sepl_tree.selection import bind_strategy

    with pytest.raises(SeplError, match=f"num_classes must be 2..255 .*got {k}"):
        bind_strategy(load_host([]), "threshold", {}, k)


def test_ranges_and_booleans_read_as_declared():
    from sepl_tree.registry import Param, Range

    tau = Range(0, 1, low_open=True)
    assert 0 not in tau and 1e-9 in tau and 1 in tau and float("nan") not in tau
    assert 1 not in Range(0, 1, high_open=True) and 0 in Range(0, 1)
    flag = Param("flag", False, bool)
    assert [flag.coerce(v) for v in ("True", "yes", "ON", "false", "0")] == [True, True, True, False, False]
