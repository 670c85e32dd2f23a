"""Bad input to ``python -m galae.train`` ends it with one line naming the problem (exit 2).

Values out of range, keys of the wrong type or form, bad YAML, checkpoints of another kind and
an out_dir that holds a run are refused before anything is written; nothing is silently
ignored.  Most tests need no training: TrainConfig, the config parser or the CLI up to its
checks.  One tiny run (8 mock galaxies, one step) serves the out_dir and init_from tests.
"""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from galae.checkpoint import FORMAT_VERSION, CheckpointError, build_modules
from galae.config import load_config, parse_overrides
from galae.mock import MockConfig, run_mock
from galae.runtime import cli_errors
from galae.train import (
    TrainConfig,
    _balanced_backward,
    _check_terms_reach_parameters,
    _init_from,
    _init_from_checkpoint,
    check_data_source,
    check_out_dir,
    main,
    resolve_device,
    set_aside_stale_log,
    train,
)

PROG = "python -m galae.train"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Exit status and stderr lines of the CLI (as under ``if __name__ == "__main__"``)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc, cli_errors(PROG):
        main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return int(exc.value.code), err


@pytest.fixture(autouse=True)
def _no_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GALAE_TRACEBACK", raising=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TrainConfig:
    """A finished one-step run; its config (out_dir holds last.pt, model.pt, log.csv)."""
    root = tmp_path_factory.mktemp("train_errors")
    data = root / "d.h5"
    run_mock(MockConfig(n=8, seed=2, shape=(32, 32), chunk=8, out=str(data)), progress=False)
    cfg = TrainConfig(
        data=str(data),
        widths=(8, 16),
        hidden=32,
        rank=2,
        batch_size=4,
        max_steps=1,
        warmup_steps=1,
        val_fraction=0.25,
        wake_weight=0.0,
        render_preset="fast",
        fit_prior=False,
        out_dir=str(root / "run"),
        device="cpu",
        tensorboard=False,
        progress=False,
    )
    train(cfg)
    return cfg


# ----------------------------------------------------------------------------------------------
# 1, 3, 7: values out of range, checked by TrainConfig whatever the loss weights
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [-1.0, 0.0, math.nan, math.inf])
@pytest.mark.parametrize("model", ["autoencoder", "unet"])
def test_grad_clip_must_be_positive_and_finite(value: float, model: str) -> None:
    with pytest.raises(ValueError, match="grad_clip must be > 0"):
        TrainConfig(grad_clip=value, model=model)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"hidden": 0}, "hidden must be >= 1"),
        ({"rank": 0}, "rank must be >= 1"),
        ({"rank": -2}, "rank must be >= 1"),
        ({"blocks_per_stage": 0}, "blocks_per_stage must be >= 1"),
        ({"val_fraction": -0.1}, r"val_fraction must be in \[0, 1\)"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"val_fraction": 1.5}, r"val_fraction must be in \[0, 1\)"),
        ({"likelihood": "foo", "wake_weight": 0.0}, "likelihood must be one of"),
        ({"likelihood": "foo", "wake_weight": 1.0}, "likelihood must be one of"),
        ({"student_df": -1.0, "wake_weight": 0.0}, "student_df must be > 0"),
        ({"student_df": 0.0, "likelihood": "student_t"}, "student_df must be > 0"),
        ({"student_df": math.inf}, "student_df must be > 0"),
        ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
        ({"wake_ramp_steps": -3}, "wake_ramp_steps must be >= 0"),
        ({"wake_start_step": -1}, "wake_start_step must be >= 0"),
        ({"num_workers": -1}, "num_workers must be >= 0"),
        ({"model": "unet", "init_from": "runs/x/model.pt"}, "init_from"),
        ({"model": "unet", "trainable": ("encoder",)}, "trainable"),
        ({"model": "unet", "unet_targets": ()}, "unet_targets must name at least one map"),
        ({"model": "unet", "unet_head": "foo"}, "unknown head 'foo'"),
        ({"model": "unet", "widths": (16,)}, "widths needs >= 2 levels"),
        ({"unet_targets": ("oh12_gas",)}, "unet_targets: settings of the U-Net baseline"),
        ({"model": "vae"}, "model must be one of"),
        ({"widths": ()}, "widths must be a non-empty list of positive integers"),
        ({"widths": (16, 0)}, "widths must be a non-empty list of positive integers"),
        ({"widths": (16, 1.5)}, "widths must be a non-empty list of positive integers"),
        ({"widths": (16, 12)}, "widths must be multiples of 8"),
        ({"eval_every": 0}, "eval_every must be >= 1"),
        ({"ckpt_every": 0}, "ckpt_every must be >= 1"),
        ({"log_every": 0}, "log_every must be >= 1"),
        ({"device": "foo"}, "device must be 'auto', 'cpu', 'cuda'"),
        ({"device": "cuda:x"}, "device must be 'auto', 'cpu', 'cuda'"),
        ({"device": "meta"}, "device must be 'auto', 'cpu', 'cuda'"),
        ({"supervised_weight": math.inf}, "supervised_weight=inf"),
        ({"wake_weight": math.nan}, "wake_weight=nan"),
        ({"sleep_weight": -1.0}, "sleep_weight=-1"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": -1e-3}, "lr must be > 0"),
        ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
        ({"max_minutes": -1.0}, "max_minutes must be >= 0"),
        ({"mock_n": 0}, "mock_n must be >= 1"),
        ({"prior_layers": 0}, "prior_layers must be >= 1"),
        ({"prior_epochs": 0}, "prior_epochs must be >= 1"),
        ({"sleep_prior_epochs": 0}, "sleep_prior_epochs must be >= 1"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"overwrite": True}, "set resume=false with overwrite=true"),
    ],
)
def test_meaningless_values_are_refused(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes)


def test_valid_values_still_pass() -> None:
    TrainConfig(widths=(4, 8, 16, 24), val_fraction=0.0, warmup_steps=0, wake_ramp_steps=0)
    TrainConfig(model="unet", widths=(8, 12, 20), unet_targets=("oh12_gas",))
    TrainConfig(likelihood="student_t", student_df=2.5, device="cpu", max_minutes=0.0)
    TrainConfig(resume=False, overwrite=True)
    TrainConfig(device="cuda:1")  # the name parses; whether the machine has it is checked later


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
def test_cuda_without_cuda_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    code, err = run_cli(["device=cuda", f"out_dir={tmp_path / 'run'}"], capsys)
    assert code == 2 and len(err) == 1 and "no CUDA GPU" in err[0]
    assert not (tmp_path / "run").exists()


def test_likelihood_error_is_one_line_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 7: no Pyro trace table, no tensor dump: the value is refused up front."""
    for bad in ("likelihood=foo", "student_df=-1"):
        code, err = run_cli([bad, "wake_weight=1", f"out_dir={tmp_path / 'run'}"], capsys)
        assert code == 2 and len(err) == 1, err
        assert err[0].startswith(f"{PROG}: error: ") and bad.split("=")[0] in err[0]


# ----------------------------------------------------------------------------------------------
# 4, 5: the config parser
# ----------------------------------------------------------------------------------------------
def _load(*pairs: str, cls: type = TrainConfig):
    return load_config(cls, None, parse_overrides(list(pairs)))


@pytest.mark.parametrize(
    ("pair", "match"),
    [
        ("widths=16", r"'widths' must be a list of integers like \[32, 64, 96, 128\], got 16"),
        ("widths=abc", "'widths' must be a list of integers"),
        ("widths=[16.5,32]", "'widths' must be a list of integers"),
        ("widths=[16,null]", "'widths' must be a list of integers"),
        ("widths=[true,16]", "'widths' must be a list of integers"),
        ("sleep_sigma_scale_dex=0.5", "'sleep_sigma_scale_dex' must be a list of 2 numbers"),
        ("sleep_sigma_scale_dex=[0.5]", "'sleep_sigma_scale_dex' must be a list of 2 numbers"),
        ("sleep_sigma_scale_dex=[a,b]", "'sleep_sigma_scale_dex' must be a list of 2 numbers"),
        ("trainable=[encoder, 3]", "'trainable' must be a list of strings"),
        ("trainable=['']", "'trainable' must be a list of strings"),
        ("out_dir=", "'out_dir' must be a non-empty string, got null"),
        ("data=", "'data' must be a non-empty string, got null"),
        ("data=null", "'data' must be a non-empty string, got null"),
        ("data=''", "'data' must be a non-empty string"),
        ("hidden=12.5", "'hidden' must be int"),
        ("hidden=true", "'hidden' must be int"),
        ("lr=fast", "'lr' must be float"),
        ("resume=maybe", "'resume' must be bool"),
        ("lr=[1", r"override 'lr=\[1': the value of 'lr' is not valid YAML"),
        ("widths=[16, 32", "the value of 'widths' is not valid YAML"),
        ("=3", "has no key"),
        ("lr", "not of the form key=value"),
    ],
)
def test_overrides_of_the_wrong_form_name_the_key(pair: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _load(pair)


def test_mock_config_scalar_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'shape' must be a list of integers like \[64, 64\]"):
        _load("shape=64", cls=MockConfig)


def test_one_string_for_a_list_of_strings_is_a_one_element_list() -> None:
    assert _load("trainable=encoder.out_z").trainable == ("encoder.out_z",)
    assert _load("model=unet", "unet_targets=oh12_gas").unet_targets == ("oh12_gas",)
    assert _load("model=unet", "unet_targets=[oh12_gas, age_gyr]").unet_targets == (
        "oh12_gas",
        "age_gyr",
    )


def test_valid_values_parse_as_before() -> None:
    cfg = _load(
        "lr=3e-4",
        "max_minutes=2e1",
        "widths=[16,32.0]",
        "sleep_sigma_scale_dex=[-1, 0.5]",
        "mock_config=null",
        "init_from=",
        "grad_clip=2",
    )
    assert cfg.lr == pytest.approx(3e-4) and cfg.max_minutes == pytest.approx(20.0)
    assert cfg.widths == (16, 32) and all(type(w) is int for w in cfg.widths)
    assert cfg.sleep_sigma_scale_dex == (-1.0, 0.5)
    assert cfg.mock_config is None and cfg.init_from is None
    assert cfg.grad_clip == 2.0 and type(cfg.grad_clip) is float
    assert _load("shape=[48, 48]", "bands=[u,g,r,i,z]", cls=MockConfig).shape == (48, 48)


@pytest.mark.parametrize("name", ["quickstart.yaml", "analytic_pop.yaml", "sdss.yaml", "unet.yaml"])
def test_packaged_train_configs_load(name: str) -> None:
    import yaml

    path = Path(__file__).parents[1] / "configs" / name
    cfg = load_config(TrainConfig, path)
    for key, value in yaml.safe_load(path.read_text()).items():
        got = getattr(cfg, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key


def test_bad_config_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1\nhidden: 3\n")
    with pytest.raises(ValueError, match=r"config file .*bad.yaml is not valid YAML.*line"):
        load_config(TrainConfig, bad)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("out_dir: runs/caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"config file .*latin.yaml is not UTF-8 text"):
        load_config(TrainConfig, latin)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(TrainConfig, listed)
    nulled = tmp_path / "null.yaml"
    nulled.write_text("data: null\n")
    with pytest.raises(ValueError, match="'data' must be a non-empty string"):
        load_config(TrainConfig, nulled)


def test_bad_yaml_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["lr=[1"], capsys)
    assert code == 2 and len(err) == 1 and "'lr'" in err[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1\n")
    code, err = run_cli(["--config", str(bad)], capsys)
    assert code == 2 and len(err) == 1 and "bad.yaml" in err[0]


# ----------------------------------------------------------------------------------------------
# 8, 9: the data source, and no out_dir left behind by a refused run
# ----------------------------------------------------------------------------------------------
def test_missing_mock_config_says_it_would_make_the_data(tmp_path: Path) -> None:
    cfg = TrainConfig(data=str(tmp_path / "d.h5"), mock_config=str(tmp_path / "mock.yaml"))
    with pytest.raises(FileNotFoundError, match="the mock config it would be generated from"):
        check_data_source(cfg)
    with pytest.raises(FileNotFoundError, match="set mock_config to generate it"):
        check_data_source(replace(cfg, mock_config=None))
    (tmp_path / "mock.yaml").write_text("shape: 64\n")
    with pytest.raises(ValueError, match=r"mock_config .*mock.yaml \(to generate the missing"):
        check_data_source(cfg)


@pytest.mark.parametrize(
    "bad",
    [
        "grad_clip=-1",
        "hidden=0",
        "widths=16",
        "device=foo",
        "data=/no/such/file.h5",
        "init_from=/no/such/model.pt",
        "model=unet",  # data missing
    ],
)
def test_refused_run_leaves_no_out_dir(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    data = tmp_path / "missing.h5"
    code, err = run_cli([f"data={data}", "device=cpu", f"out_dir={out}", bad], capsys)
    assert code == 2 and len(err) == 1, err
    assert not out.exists()


# ----------------------------------------------------------------------------------------------
# 2: an out_dir that holds a run
# ----------------------------------------------------------------------------------------------
def test_out_dir_with_a_run_needs_resume_or_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    check_out_dir(TrainConfig(out_dir=str(out), resume=False))  # empty: fine
    (out / "last.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="holds a run .*resume=true continues it"):
        check_out_dir(TrainConfig(out_dir=str(out), resume=False))
    check_out_dir(TrainConfig(out_dir=str(out), resume=True))
    check_out_dir(TrainConfig(out_dir=str(out), resume=False, overwrite=True))
    (out / "last.pt").unlink()
    (out / "model.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="holds a run"):
        check_out_dir(TrainConfig(out_dir=str(out), resume=False))
    with pytest.raises(ValueError, match="no last.pt to resume from"):
        check_out_dir(TrainConfig(out_dir=str(out), resume=True))
    (out / "model.pt").unlink()
    (out / "log.csv").write_text("step\n")
    with pytest.raises(ValueError, match="holds a run"):
        check_out_dir(TrainConfig(out_dir=str(out), resume=False))
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        check_out_dir(TrainConfig(out_dir=str(afile)))


def test_a_log_without_checkpoint_is_set_aside(tmp_path: Path) -> None:
    """resume=true into an out_dir whose run stopped before its first checkpoint: the new run
    starts its own log, and the old one is kept beside it (numbered when one is there)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.csv").write_text("step\n1\n")
    check_out_dir(TrainConfig(out_dir=str(out), resume=True))
    set_aside_stale_log(out)
    assert not (out / "log.csv").exists() and (out / "log.csv.stale").read_text() == "step\n1\n"
    (out / "log.csv").write_text("step\n2\n")
    set_aside_stale_log(out)
    assert (out / "log.csv.stale1").read_text() == "step\n2\n"
    (out / "log.csv").write_text("step\n3\n")
    (out / "last.pt").write_bytes(b"")
    set_aside_stale_log(out)  # a checkpoint to resume from: the log continues
    assert (out / "log.csv").read_text() == "step\n3\n"


def test_no_script_relies_on_resume_false_into_a_run() -> None:
    """benchmarks/*.sh never set resume=false (they would need overwrite=true now)."""
    root = Path(__file__).parents[1]
    for sh in (root / "benchmarks").glob("*.sh"):
        text = sh.read_text()
        assert "resume=false" not in text or "overwrite=true" in text, sh.name


def _log_steps(out: Path) -> list[int]:
    with (out / "log.csv").open() as fh:
        return [int(row["step"]) for row in csv.DictReader(fh)]


def test_rerun_into_a_run_is_refused_then_overwritten(
    tiny: TrainConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(tiny.out_dir, out)
    before = (out / "model.pt").read_bytes()
    args = [f"data={tiny.data}", f"out_dir={out}", "resume=false"]
    args += ["widths=[8,16]", "hidden=32", "rank=2", "max_steps=1", "batch_size=4"]
    args += ["wake_weight=0", "render_preset=fast", "fit_prior=false", "device=cpu"]
    args += ["tensorboard=false", "progress=false", "val_fraction=0.25", "warmup_steps=1"]
    code, err = run_cli(args, capsys)
    assert code == 2 and len(err) == 1 and "holds a run" in err[0]
    assert (out / "model.pt").read_bytes() == before
    assert _log_steps(out) == [1]
    train(replace(tiny, out_dir=str(out), resume=False, overwrite=True, seed=5))
    assert _log_steps(out) == [1]  # replaced, not appended to
    assert (out / "model.pt").read_bytes() != before


# ----------------------------------------------------------------------------------------------
# 6: init_from of another kind or architecture
# ----------------------------------------------------------------------------------------------
def test_init_from_a_unet_checkpoint_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "unet.pt"
    torch.save({"kind": "galae-unet", "format_version": FORMAT_VERSION}, fake)
    cfg = TrainConfig(init_from=str(fake))
    with pytest.raises(CheckpointError, match="is a galae-unet checkpoint; init_from needs an au"):
        _init_from_checkpoint(cfg)


def test_init_from_another_architecture_is_one_line(
    tiny: TrainConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = Path(tiny.out_dir) / "model.pt"
    cfg = replace(tiny, init_from=str(ckpt), widths=(8, 8), hidden=48, out_dir=str(tmp_path))
    with pytest.raises(CheckpointError, match="another encoder architecture") as exc:
        _init_from_checkpoint(cfg)
    msg = str(exc.value)
    assert "\n" not in msg and "'widths': ([8, 16], [8, 8])" in msg and "'hidden'" in msg
    assert "'rank'" not in msg
    out = tmp_path / "run"
    code, err = run_cli(
        [f"data={tiny.data}", f"init_from={ckpt}", "widths=[8,8]", f"out_dir={out}"], capsys
    )
    assert code == 2 and len(err) == 1 and "widths" in err[0]
    assert not out.exists()
    # the same settings but weights that do not fit (here: a head missing): still one line
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model, guide = build_modules(tiny, state["data_info"])
    cut = {k: v for k, v in state["encoder_state"].items() if not k.startswith("out_z")}
    with pytest.raises(CheckpointError, match="another encoder architecture: ") as exc:
        _init_from(str(ckpt), dict(state, encoder_state=cut), model, guide)
    assert "\n" not in str(exc.value) and "out_z" in str(exc.value)


# ----------------------------------------------------------------------------------------------
# trainable parameters that no loss term reaches (a one-string trainable is now accepted)
# ----------------------------------------------------------------------------------------------
def test_a_term_without_gradient_adds_nothing_and_all_such_terms_are_an_error() -> None:
    w = torch.nn.Parameter(torch.ones(3))
    terms = {"sleep": (w**2).sum(), "wake": torch.tensor(2.0)}
    norm, skipped = _balanced_backward(terms, {"sleep": 1.0, "wake": 1.0}, [w], clip=100.0)
    assert skipped == [] and norm == pytest.approx(float(2 * 3**0.5))
    cfg = TrainConfig(trainable=("encoder.out_z",), wake_weight=0.0)
    with pytest.raises(ValueError, match="no loss term .* trainable="):
        _check_terms_reach_parameters(cfg, {"sleep": torch.tensor(1.0)}, 0)
    _check_terms_reach_parameters(cfg, {"sleep": (w**2).sum()}, 0)
    later = replace(cfg, wake_weight=1.0, wake_start_step=10)  # the wake term is still to come
    _check_terms_reach_parameters(later, {"sleep": torch.tensor(1.0)}, 0)
