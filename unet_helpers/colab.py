"""Google Colab: the first cell of every notebook, and the one address of this repository.

Every notebook starts with the same setup cell (:func:`setup_cell_source`). On Colab it installs this
package from the repository, trained weights included, and calls :func:`setup_colab`, which says whether a
GPU is attached, connects Kaggle credentials and, when asked, keeps ``runs/`` on Google Drive. On your own
machine the cell does nothing.

The repository's address lives in one place, ``pyproject.toml`` (``[project.urls] Repository``). After
changing it (in a fork, say), regenerate the README's Colab badges and every notebook's setup cell with::

    python -m unet_helpers.colab sync

``tests/test_colab.py`` fails while any of them disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .data.download import load_colab_secrets

REPO_ROOT = Path(__file__).resolve().parents[1]  # a source checkout: pyproject.toml, README.md, notebooks/
CONTENT = Path("/content")  # Colab's working folder, where uploaded files land
KAGGLE_JSON = Path.home() / ".kaggle" / "kaggle.json"  # where the kaggle package looks for credentials
DRIVE = Path("/content/drive")
DRIVE_RUNS = DRIVE / "MyDrive" / "unet-tgs-salt" / "runs"

_ADDRESS = r"https://github\.com/[\w.-]+/[\w.-]+?"
_URLS_TABLE = re.compile(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", re.M | re.S)
_REPOSITORY_LINE = re.compile(r'^\s*Repository\s*=\s*"([^"]+)"', re.M)


# ---------------------------------------------------------------------------
# The one address
# ---------------------------------------------------------------------------


def repository_url(pyproject: str | Path | None = None) -> str:
    """The repository's address, e.g. ``https://github.com/unet-course/unet-tgs-salt``.

    Read from ``pyproject.toml`` in a checkout, else from the installed package's metadata (Colab).
    """
    path = Path(pyproject) if pyproject is not None else REPO_ROOT / "pyproject.toml"
    if path.is_file():
        table = _URLS_TABLE.search(path.read_text())
        line = _REPOSITORY_LINE.search(table.group(1)) if table else None
        if line is None:
            raise ValueError(f'{path} has no Repository = "https://github.com/OWNER/NAME" under [project.urls]')
        url = line.group(1).rstrip("/")
        if not re.fullmatch(_ADDRESS, url):
            raise ValueError(f"{path}: the Repository address must look like https://github.com/OWNER/NAME, got {url}")
        return url
    from importlib.metadata import metadata

    for entry in metadata("unet-helpers").get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip() == "Repository":
            return url.strip().rstrip("/")
    raise ValueError("no Repository address in pyproject.toml or in the installed package's metadata")


def setup_cell_source(url: str) -> str:
    """The first code cell of every notebook, for the repository at ``url``."""
    return (
        "# Setup: on Google Colab, install this series' package (trained weights included), then check the GPU,\n"
        "# Kaggle and Drive; on your own machine (after `pip install -r requirements.txt`) this cell does nothing.\n"
        "import sys\n"
        "\n"
        f'REPOSITORY = "{url}"  # pyproject.toml [project.urls]\n'
        "RUNS_ON_DRIVE = False  # True: checkpoints on Google Drive, so training resumes after Colab recycles the runtime\n"
        'if "google.colab" in sys.modules:\n'
        '    %pip install -q "unet-helpers @ git+{REPOSITORY}"\n'
        "    from unet_helpers.colab import setup_colab\n"
        "\n"
        "    setup_colab(runs_on_drive=RUNS_ON_DRIVE)"
    )


def colab_badge(url: str, notebook: str) -> str:
    """The README's "Open in Colab" badge for ``notebooks/<notebook>``."""
    path = url.removeprefix("https://github.com/")
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook})"
    )


_BADGE = re.compile(
    r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
    r"\(https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/main/notebooks/([\w.-]+\.ipynb)\)"
)
_PIP_FROM_GIT = re.compile(r"git\+" + _ADDRESS + r"(\.git)?(?=[\s\"'`]|$)", re.M)


def _is_setup_cell(cell: dict) -> bool:
    return cell["cell_type"] == "code" and "".join(cell["source"]).startswith("# Setup:")


def sync(root: str | Path = REPO_ROOT) -> list[Path]:
    """Rewrite the README's badges and every notebook's setup cell (and pip lines) from pyproject.toml.

    Returns the files that changed; running it again changes nothing.
    """
    root = Path(root)
    url = repository_url(root / "pyproject.toml")
    changed = []
    readme = root / "README.md"
    text = readme.read_text()
    new = _PIP_FROM_GIT.sub(f"git+{url}.git", _BADGE.sub(lambda m: colab_badge(url, m.group(1)), text))
    if new != text:
        readme.write_text(new)
        changed.append(readme)
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(path.read_text())
        for cell in notebook["cells"]:
            source = "".join(cell["source"])
            if _is_setup_cell(cell):
                source = setup_cell_source(url)
            else:
                source = _PIP_FROM_GIT.sub(f"git+{url}.git", source)
            cell["source"] = source.splitlines(keepends=True)
        text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
        if text != path.read_text():
            path.write_text(text)
            changed.append(path)
    return changed


# ---------------------------------------------------------------------------
# What the setup cell does on Colab
# ---------------------------------------------------------------------------


@dataclass
class ColabSetup:
    """What :func:`setup_colab` found and did."""

    gpu: str | None  # the GPU's name, or None
    kaggle: str  # where the Kaggle credentials came from: "environment", "Colab Secrets", "kaggle.json" or "none"
    runs_dir: Path  # where the notebooks write checkpoints (UNET_RUNS_DIR)


def _gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _kaggle_from_upload() -> bool:
    """An uploaded kaggle.json (in /content or the working folder) copied to ~/.kaggle/, readable by you only."""
    if KAGGLE_JSON.is_file():
        return True
    for folder in (CONTENT, Path.cwd()):
        uploaded = folder / "kaggle.json"
        if uploaded.is_file():
            KAGGLE_JSON.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(uploaded, KAGGLE_JSON)  # a copy: the uploaded file stays as it is
            KAGGLE_JSON.chmod(0o600)
            return True
    return False


def setup_colab(runs_on_drive: bool = False) -> ColabSetup:
    """Check the GPU, connect Kaggle, and choose where checkpoints go; print one line about each.

    ``runs_on_drive`` mounts Google Drive (Colab asks for permission) and points ``UNET_RUNS_DIR`` at
    ``MyDrive/unet-tgs-salt/runs``, so that ``--resume`` finds the checkpoints after the runtime is recycled.
    """
    gpu = _gpu_name()
    if gpu:
        print(f"GPU: {gpu}")
    else:
        print(
            "GPU: none attached. Runtime > Change runtime type > T4 GPU, then run the notebook again "
            "(everything also runs on the CPU, training much more slowly)."
        )

    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        kaggle = "environment"
    elif load_colab_secrets():  # KAGGLE_USERNAME and KAGGLE_KEY from Colab's Secrets (the key icon, left)
        kaggle = "Colab Secrets"
    elif _kaggle_from_upload():
        kaggle = "kaggle.json"
    else:
        kaggle = "none"
    if kaggle == "none":
        print(
            "Kaggle: no credentials, so the notebooks use the offline stand-in. For the real TGS Salt data, add "
            "KAGGLE_USERNAME and KAGGLE_KEY in Colab's Secrets (the key icon, left) or upload kaggle.json, "
            "accept the competition's rules on kaggle.com, and run this cell again."
        )
    else:
        print(f"Kaggle: credentials from {kaggle}; the real TGS Salt data is downloaded on first use.")

    if runs_on_drive:
        from google.colab import drive

        drive.mount(str(DRIVE))
        runs_dir = DRIVE_RUNS
        runs_dir.mkdir(parents=True, exist_ok=True)
        print(f"Checkpoints: {runs_dir} on Google Drive; they outlive this runtime, and training resumes from them.")
    else:
        runs_dir = CONTENT / "runs"
        print(
            f"Checkpoints: {runs_dir}, lost when Colab recycles the runtime; "
            "set RUNS_ON_DRIVE = True above to keep them on Google Drive."
        )
    os.environ["UNET_RUNS_DIR"] = str(runs_dir)
    return ColabSetup(gpu=gpu, kaggle=kaggle, runs_dir=runs_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unet_helpers.colab",
        description="Regenerate the README's Colab badges and every notebook's setup cell from pyproject.toml.",
    )
    parser.add_argument("command", choices=["sync"], help="sync: rewrite them from [project.urls] Repository")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the repository's root (default: this checkout)")
    args = parser.parse_args(argv)
    try:
        changed = sync(args.root)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{repository_url(args.root / 'pyproject.toml')}: {len(changed)} file(s) rewritten")
    for path in changed:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
