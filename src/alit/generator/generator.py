"""The user-facing generator: the architecture plus sampling, saving and loading.

    gen = alit.load_generator("runs/generator")      # a generator folder or run folder
    tok = gen.load_tokenizer()                       # the tokenizer whose tokens it models
    enc = gen.sample(16, num_tokens="auto", seed=0)  # an alit.Encoding of 16 new images
    images = tok.decode(enc)                         # [16, 3, H, W] in [0, 1]
    out = gen.generate(16, ...)                      # the same, with log-likelihoods and times
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..encoding import Encoding
from ..errors import AlitError
from ..tokenizer import AdaptiveTokenizer, load
from ..weights import check_state, on_meta
from .io import read_generator, save_generator
from .model import GeneratorConfig, LengthGPT
from .sample import Samples, SamplingOptions, sample


class Generator(LengthGPT):
    """A length-aware autoregressive generator of one tokenizer's ids (see `model.py`)."""

    def __init__(self, config: GeneratorConfig, tokenizer_checkpoint: str | None = None,
                 training_data: str | None = None):
        super().__init__(config)
        # where the tokenizer was loaded from when the tokens were made ("default", a folder):
        # what `load_tokenizer` loads unless told otherwise; its fingerprint decides
        self.tokenizer_checkpoint = tokenizer_checkpoint
        self.training_data = training_data  # the token folder it was trained on, when recorded

    def generate(self, n: int, num_tokens: int | str = "auto", class_=None, *, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, cfg: float = 1.0, seed: int | None = None,
                 batch_size: int = 64, use_cache: bool = True) -> Samples:
        """n samples with their log-likelihoods and times (`Samples`).

        num_tokens: "auto" (each length drawn from the learned p(L | class)) or one of the
        tokenizer's lengths. class_: None (unconditional), a class name or id, or one per sample.
        temperature, top_k, top_p, cfg shape the ids (`SamplingOptions`). seed: None draws one
        (recorded in the result); a sample depends on (seed, its index) only. use_cache=False
        recomputes the whole prefix at every step (same ids; for measuring the cache)."""
        options = SamplingOptions(temperature, top_k, top_p, cfg)
        was_training = self.training
        self.eval()
        try:
            return sample(self, n, num_tokens, class_, options, seed=seed, batch_size=batch_size, use_cache=use_cache)
        finally:
            self.train(was_training)

    def sample(self, n: int, num_tokens: int | str = "auto", class_=None, **kwargs) -> Encoding:
        """The tokens of n new images, for `tok.decode`; arguments as `generate`."""
        return self.generate(n, num_tokens, class_, **kwargs).encoding

    def check_tokenizer(self, tok: AdaptiveTokenizer) -> None:
        """AlitError unless `tok` is the tokenizer whose tokens this generator models."""
        _refuse_other_tokenizer(self.config, tok, "this generator")

    def load_tokenizer(self, checkpoint: str | Path | None = None, device=None) -> AdaptiveTokenizer:
        """The tokenizer to decode with: `checkpoint`, else the one recorded at training; checked."""
        spec = checkpoint if checkpoint is not None else self.tokenizer_checkpoint
        if spec is None:
            raise AlitError("this generator does not record its tokenizer's checkpoint: give one")
        tok = load(spec)
        self.check_tokenizer(tok)
        return tok.to(device or next(self.parameters()).device).eval()

    def save(self, folder: str | Path, *, source: str | None = None, data: str | None = None) -> Path:
        return save_generator(self.state_dict(), self.config, folder, source=source, data=data,
                              tokenizer_checkpoint=self.tokenizer_checkpoint)


DEFAULT = "default"  # the bundled generator (alit/assets/generator-default) of the bundled tokenizer's tokens


def default_generator_dir() -> Path:
    """The folder of the bundled default generator."""
    return Path(str(resources.files("alit") / "assets" / "generator-default"))


def load_generator(path: str | Path = DEFAULT, tokenizer: AdaptiveTokenizer | None = None) -> Generator:
    """A generator in eval mode from its folder (or a run folder), or "default" (the bundled one, of
    `alit.load("default")`'s tokens); with `tokenizer`, refused unless that is the tokenizer whose
    tokens it models. (A folder named default: give it as ./default.)"""
    if str(path) == DEFAULT:
        path = default_generator_dir()
    config, meta, state = read_generator(path)
    if tokenizer is not None:
        _refuse_other_tokenizer(config, tokenizer, f"{path}:")
    checkpoint = (meta.get("tokenizer") or {}).get("checkpoint")
    gen = on_meta(lambda: Generator(config, checkpoint, meta.get("data")))
    expected = gen.state_dict()
    check_state(state, {k: v.shape for k, v in expected.items()})
    wrong = [k for k, v in state.items() if v.dtype != expected[k].dtype]
    if wrong:
        raise AlitError(f"{path}: {len(wrong)} tensor(s) of the wrong dtype, e.g. {wrong[0]} is {state[wrong[0]].dtype}")
    gen.load_state_dict(state, assign=True)
    return gen.eval()


def _refuse_other_tokenizer(config: GeneratorConfig, tok: AdaptiveTokenizer, who: str) -> None:
    """AlitError unless `tok` is the tokenizer whose tokens a generator of `config` models."""
    if tok.fingerprint() != config.tokenizer:
        raise AlitError(f"{who} models the tokens of tokenizer {config.tokenizer}; the tokenizer given is "
                        f"{tok.fingerprint()}: use the one it was trained on")
