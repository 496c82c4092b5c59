"""What a model name means: the one place that turns a NAME, a path or a hub id into a local path.

  default            the model bundled with alit (alit/assets/default), whatever the working
                     directory holds (a folder named `default` there is `./default`)
  paper/<name>       one of the paper's released checkpoints or base tokenizers (`PAPER_MODELS`):
                     downloaded on first use, converted with `alit convert`'s safe reader, kept in
                     the cache, loaded from there with no network afterwards
  hf:<org>/<name>    a model on the Hugging Face Hub (`@revision` may follow), through
                     huggingface_hub's own cache (HF_HUB_OFFLINE is honoured)
  anything else      a local checkpoint folder or file

The cache is ALIT_CACHE, else $XDG_CACHE_HOME/alit, else ~/.cache/alit:
CACHE/models/paper/<name>/ holds a converted model, CACHE/downloads/ a download while it is under way
(and the original file afterwards only when it is asked to be kept).
Loading a resolved path into a module is `alit.weights.load_module`'s business.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import hub, weights
from .convert import convert
from .download import DownloadError, fetch, source_url
from .errors import AlitError
from .presets import PRESETS

CACHE_ENV = "ALIT_CACHE"
PAPER_PREFIX = "paper/"
HUB_PREFIX = "hf:"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class NoSuchCheckpoint(AlitError):
    """A checkpoint argument that is no existing folder or file and no model name (a moved run
    folder, a typo): the command line says it in its own words (`--checkpoint PATH`)."""

    def __init__(self, spec: str):
        self.spec = spec
        hint = _preset_hint(spec) if not any(c in spec for c in "/\\.~") else ""  # a path needs no preset hint
        super().__init__(f"{spec}: no such checkpoint folder or file, and not a model name (names are {known_names()}; "
                         f"`alit models` lists them); a checkpoint is the PATH of a model folder "
                         f"(model.safetensors + config.json: a training run or `alit convert`'s output){hint}")


@dataclass(frozen=True)
class PaperModel:
    """One of the paper's released files (MODELS.md), and what it holds."""

    name: str        # our name: paper/<size>-<base>-<latents>-<data> or paper/<base>
    file: str        # the released file name (also its name on a mirror)
    url: str         # its published address (MODELS.md), as the paper's README gives it
    kind: str        # "alit" (holds its base too) or "base" (a base tokenizer alone)
    size: str        # the architecture
    base: str
    latents: str     # "quantised" / "continuous" (ALIT), "-" (a base)
    data: str        # what it was trained on
    tokens: str
    heads: int | None = None  # attention heads (not in the tensors; the paper's preset of this size)

    @property
    def download_url(self) -> str:
        """Where it is fetched from: Dropbox's `dl=1` sends the file itself, not a preview page;
        Google Drive's direct address with `confirm=t` (what gdown asks for) skips the page that
        warns that a large file cannot be scanned for viruses."""
        if "dropbox.com" in self.url:
            return self.url.replace("&dl=0", "&dl=1")
        if self.url.startswith("https://drive.google.com/uc?id="):
            file_id = self.url.split("id=", 1)[1]
            return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"
        return self.url

    def describe(self) -> str:
        if self.kind == "base":
            return f"{self.size}, trained on {self.data}: {self.tokens}"
        return f"ALIT {self.size}, {self.base} base, {self.latents} latents, {self.data}, {self.tokens}"


_SMALL = "small (width 1024, 8 + 8 blocks)"
_TOKENS = "32-256 tokens (8 x 32)"
_VQGAN, _VAE = "MAGE VQGAN", "MAR KL-16 VAE"
PAPER_MODELS = {m.name: m for m in (
    PaperModel("paper/small-vqgan-quantized-in1k", "alit_vqgan_small_quantized_latent.pth",
               "https://www.dropbox.com/scl/fi/u8jyro5wysttp5mvs6gir/alit_vqgan_small_quantized_latent.pth?rlkey=1py1s9755gjhdyw5ifd9h2wff&st=swdbevjk&dl=0",
               "alit", _SMALL, _VQGAN, "quantised", "ImageNet-1K", _TOKENS, 8),
    PaperModel("paper/small-vqgan-quantized-in100", "alit_small_vqgan_quantized_latents.pth",
               "https://www.dropbox.com/scl/fi/iszluhiop09z3afo2gw5f/alit_small_vqgan_quantized_latents.pth?rlkey=klt0zgeunb60l1snuzhjdzdq2&st=zgwzgc2r&dl=0",
               "alit", _SMALL, _VQGAN, "quantised", "ImageNet-100", _TOKENS, 8),
    PaperModel("paper/base-vqgan-quantized-in100", "alit_base_vqgan_quantized_latents.pth",
               "https://www.dropbox.com/scl/fi/6cygifz37knpqtkxgfj81/alit_base_vqgan_quantized_latents.pth?rlkey=r8hn0d4d8j8eg2wjorzl9c67s&st=c5iv7wor&dl=0",
               "alit", "base (width 768, 12 + 12 blocks)", _VQGAN, "quantised", "ImageNet-100", _TOKENS, 12),
    PaperModel("paper/semilarge-vqgan-quantized-in100", "alit_semilarge_vqgan_quantized_latents.pth",
               "https://www.dropbox.com/scl/fi/wcp7s6w86slh1yy4m3egc/alit_semilarge_vqgan_quantized_latents.pth?rlkey=cf2s13c6ah3ru4ly9tb911gi7&st=d11uoq0i&dl=0",
               "alit", "semilarge (width 1024, 16 + 16 blocks)", _VQGAN, "quantised", "ImageNet-100", _TOKENS, 16),
    PaperModel("paper/small-vqgan-continuous-in100", "alit_small_vqgan_continuous_latents.pth",
               "https://www.dropbox.com/scl/fi/twbxjch2hutxjsy3sd85y/alit_small_vqgan_continuous_latents.pth?rlkey=68ycbjp6upkrxt22w5rm58cjv&st=5nyk6uvu&dl=0",
               "alit", _SMALL, _VQGAN, "continuous", "ImageNet-100", _TOKENS, 8),
    PaperModel("paper/small-vae-quantized-in100", "alit_small_vae_quantized_latents.pth",
               "https://www.dropbox.com/scl/fi/svykasoyyoapfzlghjuz2/alit_small_vae_quantized_latents.pth?rlkey=dtvyj74zq593zc7c63miwkhs3&st=dwm9w2sp&dl=0",
               "alit", _SMALL, _VAE, "quantised", "ImageNet-100", _TOKENS, 8),
    PaperModel("paper/small-vae-continuous-in100", "alit_small_vae_continuous_latents.pth",
               "https://www.dropbox.com/scl/fi/bq2yzr7dufvrpnycb856b/alit_small_vae_continuous_latents.pth?rlkey=hjx6jpr6vvfzhtgkp1cc1rnrs&st=4aa1vyh9&dl=0",
               "alit", _SMALL, _VAE, "continuous", "ImageNet-100", _TOKENS, 8),
    PaperModel("paper/mage-vqgan", "vqgan.ckpt",
               "https://drive.google.com/uc?id=13S_unB87n6KKuuMdyMnyExW0G1kplTbP",
               "base", "base tokenizer: MAGE VQGAN", _VQGAN, "-", "ImageNet-1K",
               "16 x 16 grid of 1024 codes at 256 px"),
    PaperModel("paper/mar-kl16", "kl16.ckpt",
               "https://www.dropbox.com/scl/fi/hhmuvaiacrarfg28qxhwz/kl16.ckpt?rlkey=l44xipsezc8atcffdp4q7mwmh&dl=0",
               "base", "base tokenizer: MAR KL-16 VAE", _VAE, "-", "ImageNet-1K",
               "16 x 16 grid of 16-channel latents at 256 px"),
)}


def cache_dir() -> Path:
    """ALIT_CACHE, else $XDG_CACHE_HOME/alit, else ~/.cache/alit."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "alit"
    return Path.home() / ".cache" / "alit"


def cache_path(name: str) -> Path:
    """Where the converted model of a paper name is kept."""
    return cache_dir() / "models" / paper_model(name).name


def is_cached(name: str) -> bool:
    folder = cache_path(name)
    return (folder / weights.CONFIG_FILE).is_file() and (folder / weights.WEIGHTS_FILE).is_file()


def names() -> list[str]:
    """Every model name: the bundled one and the paper's."""
    return ["default", *PAPER_MODELS]


def paper_model(name: str) -> PaperModel:
    if name not in PAPER_MODELS:
        raise AlitError(f"{name}: no such model; the paper's models are {', '.join(PAPER_MODELS)} "
                        f"(`alit models` describes them){_preset_hint(name[len(PAPER_PREFIX):])}")
    return PAPER_MODELS[name]


def resolve(spec: str | Path, revision: str | None = None, *, hub_ids: bool = False,
            expect: str | None = None, progress: bool = True) -> Path:
    """A local checkpoint path for a name, a hub id or a path (see the module docstring).

    revision: a hub revision (branch, tag or commit) for an `hf:` id. hub_ids: a bare `org/name`
    that is not a local path means a hub repository (`from_pretrained`'s convention; `alit.load`
    wants the `hf:` prefix). expect: "alit" or "base", to refuse a paper model of the other kind
    before downloading it. A Path object is always a path.
    """
    if isinstance(spec, Path):
        return spec
    spec = str(spec)
    if spec == "default":
        return bundled()
    if spec.startswith(PAPER_PREFIX):
        model = paper_model(spec)
        if expect is not None and model.kind != expect:
            raise AlitError(f"{spec}: {'a base tokenizer' if model.kind == 'base' else 'an ALIT model'}, but "
                            f"{'an ALIT model' if expect == 'alit' else 'a base tokenizer'} is needed here"
                            + ("; it is the base for `alit train distill --base`" if model.kind == "base" else ""))
        return fetch_paper(spec, progress=progress)
    if spec.startswith(HUB_PREFIX):
        repo = spec[len(HUB_PREFIX):]
        if "@" in repo:
            repo, revision = repo.split("@", 1)
        return hub.snapshot(repo, revision)
    path = Path(spec).expanduser()
    if path.exists():
        return path
    if hub_ids and HUB_ID.match(spec):
        return hub.snapshot(spec, revision)
    raise NoSuchCheckpoint(spec)


def bundled() -> Path:
    folder = weights.DEFAULT_MODEL  # read at call time: tests replace it with a missing folder
    if not (folder / weights.CONFIG_FILE).is_file():
        raise AlitError(f"the bundled default model is missing from this install ({folder}); "
                        f"reinstall alit, or give a checkpoint folder")
    return folder


def known_names() -> str:
    """Every model name, for error messages: default, the paper's names and hf:ORG/NAME."""
    return f"default, {', '.join(PAPER_MODELS)} and hf:ORG/NAME"


def _preset_hint(spec: str) -> str:
    size = spec.replace("_", "-").split("-")[0]
    if size in PRESETS:
        return f"; {spec!r} looks like a preset: alit.build({spec!r}) gives a model with random weights"
    return f"; alit.build(PRESET) gives random weights for a preset ({', '.join(PRESETS)})"


# --- the paper's files: download, convert, cache --------------------------------------------------
def fetch_paper(name: str, *, keep_original: bool = False, progress: bool = True) -> Path:
    """The cached, converted folder of a paper model: downloaded and converted on first use."""
    model = paper_model(name)
    folder = cache_path(name)
    if is_cached(name):
        return folder
    url = source_url(model.file, model.download_url)
    manual = (f"to do it by hand: download {model.file} from {model.url}, then "
              f"`alit convert {model.file} --out DIR` and use DIR in place of {name}")
    downloads = cache_dir() / "downloads"
    with _locked(folder.parent / f".{folder.name}.lock"):
        if is_cached(name):  # another process finished it while this one waited
            return folder
        try:
            original = fetch(url, downloads / model.file, progress=progress)
        except DownloadError as e:
            raise AlitError(f"{name}: {e}; {manual}") from None
        tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            convert(original, tmp, heads=model.heads, image_size=256, source=f"{name}: {model.file} from {url}")
            if folder.exists():
                shutil.rmtree(folder)  # an incomplete folder from an older version
            os.replace(tmp, folder)
        except AlitError as e:
            original.unlink(missing_ok=True)  # a damaged file is not kept for the next try
            raise AlitError(f"{name}: the file downloaded from {url} did not convert ({e}); it was "
                            f"deleted; {manual}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if keep_original:
            print(f"{name}: the original file is kept at {original}", flush=True)
        else:
            original.unlink(missing_ok=True)
    return folder


def remove(name: str) -> list[Path]:
    """Delete a paper model's cached folder (and any download of it); the paths removed."""
    model = paper_model(name)
    gone = []
    folder = cache_path(name)
    if folder.exists():
        shutil.rmtree(folder)
        gone.append(folder)
    for leftover in (cache_dir() / "downloads" / model.file, cache_dir() / "downloads" / f"{model.file}.part"):
        if leftover.exists():
            leftover.unlink()
            gone.append(leftover)
    return gone


@contextlib.contextmanager
def _locked(lock: Path):
    """An exclusive lock file, so two processes do not download and convert the same model at once."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "w")
    except OSError as e:
        raise AlitError(f"cannot write the model cache {lock.parent} ({e.strerror or e}); set "
                        f"{CACHE_ENV} to a writable folder") from None
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock, the rename is still atomic
            fcntl = None
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()
