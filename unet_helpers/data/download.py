"""The real data from Kaggle: credentials (file, environment or Colab secrets), download and unpacking."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

from . import files
from .files import TGSDataError, default_data_dir, layout_problems, write_new

COMPETITION = "tgs-salt-identification-challenge"
RULES_URL = f"https://www.kaggle.com/c/{COMPETITION}/rules"

_CREDENTIALS_HELP = (
    "Kaggle credentials were not found. Either\n"
    "  * put kaggle.json (Kaggle > Settings > API > Create New Token) in ~/.kaggle/kaggle.json "
    "(or in the folder named by KAGGLE_CONFIG_DIR) and run `chmod 600 ~/.kaggle/kaggle.json`, or\n"
    "  * set the environment variables KAGGLE_USERNAME and KAGGLE_KEY, or\n"
    "  * on Colab, add KAGGLE_USERNAME and KAGGLE_KEY as secrets (the key icon on the left) "
    "and allow this notebook to use them."
)


def load_colab_secrets() -> bool:
    """On Colab, copy the KAGGLE_USERNAME and KAGGLE_KEY secrets into the environment; True when both were there.

    Nothing is set unless both secrets exist and the notebook was allowed to read them.
    """
    if "google.colab" not in sys.modules:
        return False
    try:
        from google.colab import userdata  # type: ignore

        values = {name: userdata.get(name) for name in ("KAGGLE_USERNAME", "KAGGLE_KEY")}
    except Exception:  # a secret missing or access not granted: fall back to the other ways
        return False
    if not all(values.values()):
        return False
    for name, value in values.items():
        os.environ.setdefault(name, value)
    return True


def kaggle_credentials_found() -> bool:
    """True when the kaggle package will find credentials (environment, kaggle.json or Colab secrets)."""
    load_colab_secrets()
    if (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")) or os.environ.get("KAGGLE_API_TOKEN"):
        return True
    folders = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    folders += [Path.home() / ".kaggle", Path.home() / ".config" / "kaggle"]
    return any((f / "kaggle.json").is_file() or (f / "access_token").is_file() for f in folders)


def _kaggle_api():
    """The authenticated Kaggle API. Imported here, not at the top: importing kaggle authenticates."""
    if not kaggle_credentials_found():
        raise TGSDataError(_CREDENTIALS_HELP)
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except Exception as err:  # the package authenticates on import and fails loudly
        raise TGSDataError(f"the kaggle package could not start ({err}).\n{_CREDENTIALS_HELP}") from None
    api = KaggleApi()
    api.authenticate()
    return api


def _http_status(err: Exception) -> int | None:
    for attr in ("status", "status_code"):
        if isinstance(getattr(err, attr, None), int):
            return getattr(err, attr)
    response = getattr(err, "response", None)
    if isinstance(getattr(response, "status_code", None), int):
        return response.status_code
    for code in (401, 403, 404):
        if str(code) in str(err):
            return code
    return None


def _explain_kaggle_error(err: Exception) -> TGSDataError:
    status = _http_status(err)
    if status == 403:
        return TGSDataError(
            f"Kaggle refused the download (HTTP 403): accept the competition's rules at {RULES_URL} "
            "while signed in with the account of your credentials, then run this again."
        )
    if status == 401:
        return TGSDataError(f"Kaggle rejected the credentials (HTTP 401): create a new API token.\n{_CREDENTIALS_HELP}")
    return TGSDataError(f"the Kaggle download failed: {err}")


def _archive_ok(path: Path) -> bool:
    """True when ``path`` is a complete zip archive (a truncated download is not)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (zipfile.BadZipFile, OSError):
        return False


def _extract_missing(archive: zipfile.ZipFile, target: Path, strip: str = "") -> None:
    """Extract the members whose files do not exist yet (never overwrite)."""
    for member in archive.infolist():
        name = member.filename[len(strip) :] if strip and member.filename.startswith(strip) else member.filename
        if member.is_dir() or not name or name.startswith(("__MACOSX", "/")) or ".." in Path(name).parts:
            continue
        out = target / name
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(member) as src:
            write_new(out, lambda p: p.write_bytes(src.read()))


def _unpack(archive_path: Path, root: Path) -> None:
    """Unpack Kaggle's competition archive into its layout: csv files, then train.zip and test.zip."""
    with zipfile.ZipFile(archive_path) as outer:
        for member in outer.namelist():
            if member.endswith(".csv"):
                _extract_missing_one(outer, member, root / Path(member).name)
        for inner_name in ("train.zip", "test.zip"):
            if inner_name in outer.namelist():
                split = inner_name[:-4]
                with outer.open(inner_name) as raw, zipfile.ZipFile(raw) as inner:
                    _extract_missing(inner, root / split, strip=f"{split}/")


def _extract_missing_one(archive: zipfile.ZipFile, member: str, out: Path) -> None:
    if not out.exists():
        write_new(out, lambda p: p.write_bytes(archive.read(member)))


def download_tgs_salt(root: str | Path | None = None, quiet: bool = False) -> Path:
    """Download the competition's files with the kaggle package and unpack them into Kaggle's layout.

    Idempotent: a complete folder is left alone; a complete archive is not fetched again; a
    truncated archive is fetched again. Files already in ``root`` are never overwritten or deleted.
    Raises ``TGSDataError`` explaining what to do without credentials or with the rules not accepted.
    """
    root = Path(root) if root is not None else default_data_dir() / "tgs-salt"
    if not layout_problems(root, files.N_TRAIN, files.N_TEST):
        return root
    api = _kaggle_api()
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"{COMPETITION}.zip"
    if not _archive_ok(archive):
        try:
            api.competition_download_files(COMPETITION, path=str(root), force=archive.exists(), quiet=quiet)
        except Exception as err:
            raise _explain_kaggle_error(err) from err
        if not _archive_ok(archive):
            raise TGSDataError(f"{archive} is incomplete after the download; run download_tgs_salt() again")
    _unpack(archive, root)
    problems = layout_problems(root, files.N_TRAIN, files.N_TEST)
    if problems:
        raise TGSDataError(f"{root} is still incomplete after unpacking {archive.name}: " + "; ".join(problems))
    return root
