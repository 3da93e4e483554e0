"""The repository's one address, and the notebooks' setup cell run as on Colab (with a fake google.colab)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from unet_helpers import colab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


# ---------------------------------------------------------------------------
# One address
# ---------------------------------------------------------------------------


def test_the_address_lives_in_pyproject():
    assert colab.repository_url() == "https://github.com/unet-course/unet-tgs-salt"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_starts_with_the_setup_cell_for_that_address(notebook):
    assert _code_cells(notebook)[0] == colab.setup_cell_source(colab.repository_url())


def test_every_colab_badge_and_pip_line_uses_that_address():
    url = colab.repository_url()
    readme = (ROOT / "README.md").read_text()
    badges = re.findall(r"\[!\[Open In Colab\][^\n]*?\.ipynb\)", readme)
    assert badges == [colab.colab_badge(url, p.name) for p in NOTEBOOKS]  # one per notebook, in order
    texts = [readme] + [p.read_text() for p in NOTEBOOKS]
    for text in texts:  # any other mention of a repository to install or open must be this one
        for owner_name in re.findall(
            r"(?:git\+https://github\.com/|colab\.research\.google\.com/github/)([\w.-]+/[\w-]+)", text
        ):
            assert f"https://github.com/{owner_name}" == url


def test_sync_rewrites_every_place_from_pyproject_and_then_changes_nothing(tmp_path):
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    assert colab.sync(tmp_path) == []  # the checkout agrees with itself
    fork = "https://github.com/someone/my-unet-fork"
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(colab.repository_url(), fork))
    changed = colab.sync(tmp_path)
    assert {p.name for p in changed} == {"README.md"} | {p.name for p in NOTEBOOKS}
    assert colab.sync(tmp_path) == []
    everything = "".join(p.read_text() for p in [tmp_path / "README.md", *(tmp_path / "notebooks").glob("*.ipynb")])
    assert "unet-course/unet-tgs-salt" not in everything
    assert everything.count("someone/my-unet-fork") >= 2 * len(NOTEBOOKS)  # a badge and a setup cell each, at least


def test_a_malformed_address_is_named(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[project.urls]\nRepository = "github.com/x"\n')
    with pytest.raises(ValueError, match="https://github.com/OWNER/NAME"):
        colab.repository_url(tmp_path / "pyproject.toml")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(ValueError, match=r"\[project.urls\]"):
        colab.repository_url(tmp_path / "pyproject.toml")


# ---------------------------------------------------------------------------
# The setup cell, run with a fake google.colab
# ---------------------------------------------------------------------------


class FakeColab:
    """google.colab with Secrets (userdata) and Drive, recording what the setup cell asks of them."""

    def __init__(self, secrets: dict[str, str], drive_root: Path):
        self.mounted: list[str] = []
        self.module = types.ModuleType("google.colab")
        userdata = types.ModuleType("google.colab.userdata")

        def get(key):
            if key not in secrets:
                raise RuntimeError(f"Secret {key} does not exist.")  # Colab's SecretNotFoundError
            return secrets[key]

        userdata.get = get
        drive = types.ModuleType("google.colab.drive")

        def mount(path):
            self.mounted.append(path)
            (drive_root / "MyDrive").mkdir(parents=True, exist_ok=True)

        drive.mount = mount
        self.module.userdata, self.module.drive = userdata, drive
        self.submodules = {"google.colab.userdata": userdata, "google.colab.drive": drive}


class FakeIPython:
    """Just enough of IPython for the transformed cell: ``%pip`` line magics, recorded and expanded."""

    def __init__(self, namespace: dict):
        self.namespace, self.pip_lines = namespace, []

    def run_line_magic(self, name: str, line: str) -> None:
        assert name == "pip"
        self.pip_lines.append(line.format(**self.namespace))  # IPython expands {NAME} in magics the same way


@pytest.fixture
def colab_env(tmp_path, monkeypatch):
    """A fake Colab: google.colab importable, /content, ~/.kaggle and Drive in tmp_path, a GPU or not."""
    content, home = tmp_path / "content", tmp_path / "home"
    content.mkdir()
    monkeypatch.setattr(colab, "CONTENT", content)
    monkeypatch.setattr(colab, "KAGGLE_JSON", home / ".kaggle" / "kaggle.json")
    monkeypatch.setattr(colab, "DRIVE", content / "drive")
    monkeypatch.setattr(colab, "DRIVE_RUNS", content / "drive" / "MyDrive" / "unet-tgs-salt" / "runs")
    monkeypatch.chdir(content)
    for key in ("KAGGLE_USERNAME", "KAGGLE_KEY", "UNET_RUNS_DIR"):
        # setenv first, so that monkeypatch records the variable and removes whatever the setup cell sets there:
        # fake credentials left behind would make the notebooks under test try to download from Kaggle.
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)

    def install(secrets=None, gpu=None):
        fake = FakeColab(secrets or {}, content / "drive")
        google = types.ModuleType("google")
        google.colab = fake.module
        monkeypatch.setitem(sys.modules, "google", google)
        monkeypatch.setitem(sys.modules, "google.colab", fake.module)
        for name, module in fake.submodules.items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(colab, "_gpu_name", lambda: gpu)
        return fake

    return types.SimpleNamespace(content=content, home=home, install=install)


def run_setup_cell(runs_on_drive: bool = False) -> FakeIPython:
    """Notebook 01's first cell, turned into Python as IPython does, run with RUNS_ON_DRIVE set as given."""
    source = _code_cells(NOTEBOOKS[0])[0].replace("RUNS_ON_DRIVE = False", f"RUNS_ON_DRIVE = {runs_on_drive}")
    namespace: dict = {}
    shell = FakeIPython(namespace)
    namespace["get_ipython"] = lambda: shell
    exec(TransformerManager().transform_cell(source), namespace)
    return shell


def test_locally_the_setup_cell_does_nothing(colab_env, capsys, monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    shell = run_setup_cell()
    assert shell.pip_lines == [] and capsys.readouterr().out == ""
    assert not colab_env.home.exists() and "UNET_RUNS_DIR" not in __import__("os").environ


def test_on_colab_it_installs_from_the_address_and_uses_secrets_and_the_gpu(colab_env, capsys):
    colab_env.install(secrets={"KAGGLE_USERNAME": "learner", "KAGGLE_KEY": "abc123"}, gpu="Tesla T4")
    shell = run_setup_cell()
    assert shell.pip_lines == [f'install -q "unet-helpers @ git+{colab.repository_url()}"']
    out = capsys.readouterr().out
    assert "GPU: Tesla T4" in out and "credentials from Colab Secrets" in out and "RUNS_ON_DRIVE = True" in out
    import os

    assert (os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"]) == ("learner", "abc123")
    assert os.environ["UNET_RUNS_DIR"] == str(colab_env.content / "runs")


def test_on_colab_without_a_gpu_it_says_how_to_attach_one_and_takes_an_uploaded_kaggle_json(colab_env, capsys):
    colab_env.install(gpu=None)
    uploaded = colab_env.content / "kaggle.json"
    uploaded.write_text('{"username": "learner", "key": "abc123"}')
    run_setup_cell()
    out = capsys.readouterr().out
    assert "Runtime > Change runtime type" in out and "credentials from kaggle.json" in out
    copied = colab_env.home / ".kaggle" / "kaggle.json"
    assert copied.read_text() == uploaded.read_text() and copied.stat().st_mode & 0o777 == 0o600
    assert uploaded.read_text() == '{"username": "learner", "key": "abc123"}'  # the upload is left as it was


def test_on_colab_without_credentials_it_says_where_to_put_them_and_can_keep_runs_on_drive(colab_env, capsys):
    fake = colab_env.install(secrets={"KAGGLE_USERNAME": "learner"})  # half a pair of secrets is none
    run_setup_cell(runs_on_drive=True)
    out = capsys.readouterr().out
    assert "no credentials" in out and "Secrets" in out and "kaggle.json" in out
    assert fake.mounted == [str(colab_env.content / "drive")]
    import os

    runs = Path(os.environ["UNET_RUNS_DIR"])
    assert runs == colab_env.content / "drive" / "MyDrive" / "unet-tgs-salt" / "runs" and runs.is_dir()
    assert "KAGGLE_KEY" not in os.environ and "KAGGLE_USERNAME" not in os.environ  # never half a pair


def test_the_notebooks_put_their_checkpoints_where_the_setup_cell_says(monkeypatch, tmp_path):
    from unet_helpers.utils import runs_dir

    monkeypatch.delenv("UNET_RUNS_DIR", raising=False)
    assert runs_dir("04-full") == Path("../runs/04-full")
    monkeypatch.setenv("UNET_RUNS_DIR", str(tmp_path))
    assert runs_dir("04-full") == tmp_path / "04-full"


@pytest.fixture(scope="module")
def installed_from_local_source(tmp_path_factory):
    """What the setup cell's pip line installs, built from this checkout instead of GitHub (no deps)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-warn-script-location", "--target",
         str(target), str(ROOT)],
        check=True,
    )  # fmt: skip
    return target


def test_the_install_carries_the_shipped_weights_and_their_cards(installed_from_local_source):
    weights = installed_from_local_source / "unet_helpers" / "weights"
    from unet_helpers.pretrained import NAMES

    for name in NAMES:
        assert (weights / f"{name}.pt").stat().st_size > 100_000 and (weights / f"{name}.json").is_file()
    assert (installed_from_local_source / "unet_helpers" / "colab.py").is_file()


def test_the_install_does_not_reinstall_torch_where_it_is_already_there(tmp_path):
    """Colab already has torch: the package's lower bounds must be met by it, so pip leaves it alone."""
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--report", str(report),
         str(ROOT)],
        check=True,
    )  # fmt: skip
    to_install = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert to_install == {"unet-helpers"}  # torch, torchvision and the rest are already satisfied
