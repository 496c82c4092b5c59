"""The Hugging Face Hub: a model folder with a model card, fetching a repository, pushing one.

A hub repository of an alit model is exactly our checkpoint folder (config.json,
model.safetensors) plus README.md, its model card. Everything goes through `huggingface_hub`
(`pip install 'alit[hub]'`), so its cache (HF_HOME / HF_HUB_CACHE), HF_HUB_OFFLINE and its token
are honoured as they are for any other library.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from . import weights
from .errors import AlitError

CARD_FILE = "README.md"
FILES = [weights.CONFIG_FILE, weights.WEIGHTS_FILE, CARD_FILE]


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise AlitError("the Hugging Face Hub needs huggingface_hub: pip install 'alit[hub]'") from None
    return huggingface_hub


def snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local folder of a hub repository at a revision, from the hub's cache when it is there."""
    hub = _hub()
    from huggingface_hub import errors

    where = f"hf:{repo_id}" + (f"@{revision}" if revision else "")
    try:
        folder = hub.snapshot_download(repo_id, revision=revision, allow_patterns=FILES,
                                       library_name="alit")
    except errors.RepositoryNotFoundError:
        raise AlitError(f"{where}: no such repository on the Hugging Face Hub (or it is private: "
                        f"log in with `hf auth login`)") from None
    except errors.RevisionNotFoundError:
        raise AlitError(f"{where}: the repository has no revision {revision!r}") from None
    except errors.LocalEntryNotFoundError:
        raise AlitError(f"{where}: not in the Hugging Face cache, and the Hub cannot be reached "
                        f"({'HF_HUB_OFFLINE is set' if hub.constants.is_offline_mode() else 'no connection'}); "
                        f"download it on a machine with internet, or give a local folder") from None
    except (errors.HfHubHTTPError, errors.HFValidationError, OSError) as e:
        raise AlitError(f"{where}: {' '.join(str(e).split())[:300]}") from None
    folder = Path(folder)
    if not (folder / weights.CONFIG_FILE).is_file():
        raise AlitError(f"{where}: not an alit model (the repository has no {weights.CONFIG_FILE})")
    return folder


def save_pretrained(module, folder: str | Path, *, origin: weights.Origin | None = None,
                    recipe: str | Path | None = None, figures: dict | str | Path | None = None,
                    name: str | None = None) -> Path:
    """Write config.json, model.safetensors and a README.md model card into folder.

    origin: where the module was loaded from (`weights.origin`), recorded in the card. recipe: the
    training recipe (YAML text, or its file; default: the recipe.yaml of the run the model was
    loaded from, when there is one). figures: measured quality, a {"metric": {length: value}}
    dict, or the summary.json of `alit demo` / results.json of `alit eval`.
    """
    folder = Path(folder)
    source = origin.source if origin is not None else None
    weights.save(module.state_dict(), module.config, folder, source=source)
    card = model_card(module.config, name=name or folder.name, source=source,
                      recipe=_recipe_text(origin, recipe), figures=_figures(figures))
    (folder / CARD_FILE).write_text(card)
    return folder


def push_to_hub(module, repo_id: str, *, private: bool | None = None, token: str | None = None,
                revision: str | None = None, commit_message: str = "Upload alit model", **card) -> str:
    """save_pretrained into a temporary folder and upload it to repo_id (created if missing).
    Returns the commit's URL."""
    hub = _hub()
    api = hub.HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="alit-push-") as tmp:
        save_pretrained(module, tmp, name=repo_id, **card)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=revision,
                                     commit_message=commit_message)
        except Exception as e:  # noqa: BLE001 - any failure of the Hub is reported on one line
            raise AlitError(f"push to hf:{repo_id} failed: {' '.join(str(e).split())[:300]}") from None
    return str(getattr(info, "commit_url", info))


def model_card(config, *, name: str, source: str | None = None, recipe: str | None = None,
               figures: dict | None = None) -> str:
    """The README.md of a model: front matter, what it is, its config, its recipe and figures."""
    base = config.base
    if base.kind == "vqgan":
        base_text = f"a VQGAN ({base.codebook_size} codes of {base.latent_channels} dims)"
    else:
        base_text = f"a KL-VAE ({base.latent_channels} latent channels, scaled by {base.scale_factor})"
    grid = config.grid_size
    tokens = (f"quantised: ids into a codebook of {config.codebook_size} entries of {config.latent_dim} dims"
              if config.quantize else f"continuous latents of {config.latent_dim} dims")
    lines = [
        "---", "library_name: alit", "tags:", "- image-tokenization", "- adaptive-length", "- alit", "---", "",
        f"# {name}", "",
        f"An adaptive-length image tokenizer (ALIT, \"Adaptive Length Image Tokenization via Recurrent "
        f"Allocation\", Duggal et al., ICLR 2025) for the alit library (its `from_pretrained`, below, loads it). "
        f"It encodes a {config.image_size} x {config.image_size} RGB image into {config.lengths[0]} to "
        f"{config.max_tokens} 1D tokens ({config.num_iters} rollout iterations of {config.tokens_per_iter}), "
        f"more for complex images; tokens are {tokens}. Its frozen base tokenizer is {base_text} on a "
        f"{grid} x {grid} grid.", "",
        f"- encoder: width {config.encoder_width}, {config.encoder_depth} blocks, {config.encoder_heads} heads; "
        f"decoder: width {config.decoder_width}, {config.decoder_depth} blocks, {config.decoder_heads} heads",
        f"- default length rule: `{config.criterion}` (the shortest length whose reconstruction meets it); "
        f"default halting: `{config.halting}`",
    ]
    if source:
        lines.append(f"- origin: {source}")
    lines += ["", "## Use", "", "```python", "import torch, alit", "",
              f"tok = alit.AdaptiveTokenizer.from_pretrained(\"{name}\")",
              f"images = torch.rand(1, 3, {config.image_size}, {config.image_size})  # RGB in [0, 1]",
              f"enc = tok.encode(images, criterion=alit.L1Below({_threshold(config.criterion)}))",
              "out = tok.decode(enc)", "```", "",
              "## Configuration", "", "```json", json.dumps(config.to_dict(), indent=1), "```", "",
              "## Training", ""]
    if recipe:
        lines += ["The recipe it was trained with (`alit train ... --config` of this file):", "",
                  "```yaml", recipe.rstrip(), "```", ""]
    else:
        lines += ["No training recipe was recorded with this model" + (f" (origin: {source})." if source else "."),
                  ""]
    lines += ["## Measured", ""]
    if figures:
        columns = sorted({int(L) for per in figures.values() for L in per})
        lines.append("| metric | " + " | ".join(str(L) for L in columns) + " |")
        lines.append("| --- |" + " --- |" * len(columns))
        for metric, per in figures.items():
            per = {int(k): v for k, v in per.items()}
            lines.append(f"| {metric} | " + " | ".join(_fmt(per.get(L)) for L in columns) + " |")
        lines += ["", "Columns are token counts."]
    else:
        lines.append("No measured figures were recorded with this model.")
    return "\n".join(lines) + "\n"


def _threshold(criterion: str) -> str:
    name, _, value = criterion.partition(":")
    return value if name == "l1" and value else "0.07"


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def _recipe_text(origin: weights.Origin | None, recipe) -> str | None:
    if recipe is not None:
        path = Path(recipe) if not (isinstance(recipe, str) and "\n" in recipe) else None
        if path is not None and path.is_file():
            return path.read_text()
        if path is not None and isinstance(recipe, Path):
            raise AlitError(f"{recipe}: no such recipe file")
        return str(recipe)
    if origin is not None:  # a run folder RUN/ (or RUN/checkpoints/step-N/) keeps the recipe it ran
        for folder in list(Path(origin.weights).parents)[:3]:
            if (folder / "recipe.yaml").is_file():
                return (folder / "recipe.yaml").read_text()
    return None


def _figures(figures) -> dict | None:
    """{"metric": {length: value}} from a dict, an `alit demo` summary.json or an `alit eval` results.json."""
    if figures is None or isinstance(figures, dict) and all(isinstance(v, dict) for v in figures.values()) \
            and "lengths" not in figures and "mean_l1" not in figures:
        return figures
    if not isinstance(figures, dict):
        try:
            figures = json.loads(Path(figures).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise AlitError(f"{figures}: unreadable figures file ({e})") from None
    if "mean_l1" in figures:  # alit demo
        out = {"mean L1 (8-bit)": figures["mean_l1"]}
        if "mean_psnr" in figures:
            out["mean PSNR (dB)"] = figures["mean_psnr"]
        return out
    if isinstance(figures.get("lengths"), dict):  # alit eval: lengths -> {metric: value}
        out: dict = {}
        for L, row in figures["lengths"].items():
            for metric, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out.setdefault(metric, {})[L] = value
        return out
    raise AlitError("figures: expected {metric: {length: value}}, an `alit demo` summary.json or an "
                    "`alit eval` results.json")
