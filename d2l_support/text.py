"""Text as tensors: tokens, vocabularies, minibatches of sequences, and language-model training (chapters 17, 18).

Both minibatch samplers cut the corpus the same way. Of a corpus of N tokens, the N - 1 positions that have a
successor can start an input; one epoch holds `num_batches = (N - 1) // (batch_size * num_steps)` batches and so
covers `num_batches * batch_size * num_steps` consecutive positions starting at a random `offset` in
`[0, slack]`, where `slack = (N - 1) - num_batches * batch_size * num_steps`. The positions before the offset and
after the covered range (`slack` of them in all) are skipped in that epoch, but every position that has a
successor is covered for some offset (offset 0 reaches the first, offset `slack` the last), so none is
unreachable. Within an epoch every covered position is used exactly once.
"""

import collections
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from d2l_support.data import read_time_machine
from d2l_support.device import describe_device, get_device
from d2l_support.figures import LivePlot
from d2l_support.train import (
    EpochResult,
    check_epochs,
    checkpoint_state,
    evaluation_mode,
    fit,
    network_device,
    take_step,
)

TOKEN_KINDS = ("char", "word")
UNK = "<unk>"


# ---------------------------------------------------------------- tokens and vocabularies


def preprocess(text: str) -> str:
    """Lower-case a text and turn every run of characters other than letters into one space (chapter 17)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return re.sub("[^A-Za-z]+", " ", text).lower().strip()


def tokenize(text: str | Sequence[str], token: str = "char") -> list[str] | list[list[str]]:
    """Split a text into a list of tokens, or each of a list of lines into its own list (chapter 17).

    `token="char"` gives characters (spaces included), `token="word"` gives words split at white space.
    """
    if token not in TOKEN_KINDS:
        raise ValueError(f"token must be one of {TOKEN_KINDS}, got {token!r}")
    if isinstance(text, str):
        return list(text) if token == "char" else text.split()
    lines = list(text)
    bad = [type(line).__name__ for line in lines if not isinstance(line, str)]
    if bad:
        raise TypeError(f"expected a str or a sequence of str, got a sequence holding {bad[0]}")
    return [tokenize(line, token) for line in lines]


def _flatten(tokens: Iterable) -> list[str]:
    """Flatten a list of tokens or a list of lists of tokens into one list of tokens."""
    flat = []
    for item in tokens:
        if isinstance(item, str):
            flat.append(item)
        elif isinstance(item, Iterable):
            flat.extend(_flatten(item))
        else:
            raise TypeError(f"tokens must be str or nested lists of str, got {type(item).__name__}")
    return flat


class Vocab:
    """Map tokens to indices and back: `<unk>` is 0, then reserved tokens, then the rest by frequency (chapter 17).

    Tokens seen fewer than `min_freq` times map to `<unk>`; ties in frequency are broken alphabetically.
    """

    def __init__(self, tokens: Iterable = (), min_freq: int = 0, reserved_tokens: Sequence[str] = ()):
        if not isinstance(min_freq, int) or min_freq < 0:
            raise ValueError(f"min_freq must be a non-negative int, got {min_freq!r}")
        reserved = list(reserved_tokens)
        if UNK in reserved or len(set(reserved)) != len(reserved):
            raise ValueError(f"reserved_tokens must be distinct and must not include {UNK!r}, got {reserved}")
        counter = collections.Counter(_flatten(tokens))
        self.token_freqs: list[tuple[str, int]] = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        special = {UNK, *reserved}
        self.idx_to_token: list[str] = [UNK, *reserved] + [
            tok for tok, freq in self.token_freqs if freq >= min_freq and tok not in special
        ]
        self.token_to_idx: dict[str, int] = {tok: i for i, tok in enumerate(self.idx_to_token)}

    def __len__(self) -> int:
        return len(self.idx_to_token)

    @property
    def unk(self) -> int:
        """The index of the unknown token, 0."""
        return 0

    def __getitem__(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self.token_to_idx.get(tokens, self.unk)
        return [self[tok] for tok in tokens]

    def to_indices(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Return the index of a token, or the list of indices of a sequence of tokens (chapter 17)."""
        return self[tokens]

    def to_tokens(self, indices: int | Sequence[int] | torch.Tensor) -> str | list[str]:
        """Return the token of an index, or the list of tokens of a sequence or tensor of indices (chapter 17)."""
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        if isinstance(indices, int):
            if not 0 <= indices < len(self):
                raise ValueError(f"index {indices} is outside the vocabulary of size {len(self)}")
            return self.idx_to_token[indices]
        return [self.to_tokens(int(i)) for i in indices]


def load_corpus_time_machine(max_tokens: int = -1, token: str = "char") -> tuple[torch.Tensor, Vocab]:
    """Return The Time Machine as a 1-D LongTensor of token indices and its vocabulary (chapter 17).

    The text is preprocessed (letters only, lower case); `max_tokens > 0` keeps the first tokens.
    """
    if not isinstance(max_tokens, int) or (max_tokens < 1 and max_tokens != -1):
        raise ValueError(f"max_tokens must be a positive int or -1 (all), got {max_tokens!r}")
    tokens = tokenize(preprocess(read_time_machine()), token)
    if max_tokens > 0:
        tokens = tokens[:max_tokens]
    vocab = Vocab(tokens)
    return torch.tensor(vocab[tokens], dtype=torch.long), vocab


# ---------------------------------------------------------------- minibatches of sequences


def plan_epoch(num_tokens: int, batch_size: int, num_steps: int) -> tuple[int, int]:
    """Return (num_batches, slack): the batches in one epoch and the positions each epoch skips (chapter 17).

    Positions 0 .. num_tokens - 2 have a successor; an epoch covers num_batches * batch_size * num_steps
    consecutive ones from an offset in [0, slack].
    """
    for name, value in (("batch_size", batch_size), ("num_steps", num_steps)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    per_batch = batch_size * num_steps
    num_batches = (num_tokens - 1) // per_batch
    if num_batches < 1:
        raise ValueError(
            f"a corpus of {num_tokens} tokens is too short for one batch of {batch_size} x {num_steps}: "
            f"it needs at least {per_batch + 1} tokens"
        )
    return num_batches, num_tokens - 1 - num_batches * per_batch


def _as_corpus(corpus: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Return the corpus as a 1-D LongTensor, or raise a clear error."""
    corpus = corpus if isinstance(corpus, torch.Tensor) else torch.tensor(list(corpus), dtype=torch.long)
    if corpus.ndim != 1 or corpus.dtype != torch.long:
        raise ValueError(f"corpus must be a 1-D LongTensor of token indices, got {corpus.dtype} of shape "
                         f"{tuple(corpus.shape)}")
    return corpus


def _pick_offset(slack: int, offset: int | None, generator: torch.Generator | None) -> int:
    """Draw an offset uniformly from [0, slack], or check the one given."""
    if offset is None:
        return int(torch.randint(0, slack + 1, (1,), generator=generator))
    if not isinstance(offset, int) or not 0 <= offset <= slack:
        raise ValueError(f"offset must be an int in [0, {slack}] for this corpus and batch shape, got {offset!r}")
    return offset


def _windows(corpus, batch_size, num_steps, offset, generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Return the covered inputs and targets of one epoch as flat tensors, and the number of batches."""
    corpus = _as_corpus(corpus)
    num_batches, slack = plan_epoch(len(corpus), batch_size, num_steps)
    start = _pick_offset(slack, offset, generator)
    n = num_batches * batch_size * num_steps
    return corpus[start:start + n], corpus[start + 1:start + 1 + n], num_batches


def seq_data_iter_random(corpus: torch.Tensor | Sequence[int], batch_size: int, num_steps: int,
                         offset: int | None = None,
                         generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (X, Y) batches of shape (batch_size, num_steps) from shuffled windows, Y = X shifted by one (chapter 17).

    The windows tile the covered range without overlap, so neighbouring batches are unrelated.
    """
    X, Y, num_batches = _windows(corpus, batch_size, num_steps, offset, generator)
    X, Y = X.reshape(-1, num_steps), Y.reshape(-1, num_steps)
    order = torch.randperm(len(X), generator=generator).to(X.device)
    for i in range(num_batches):
        index = order[i * batch_size:(i + 1) * batch_size]
        yield X[index], Y[index]


def seq_data_iter_sequential(corpus: torch.Tensor | Sequence[int], batch_size: int, num_steps: int,
                             offset: int | None = None,
                             generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (X, Y) batches of shape (batch_size, num_steps); row i continues row i of the last batch (chapter 17).

    The covered range is split into batch_size contiguous streams, read num_steps tokens at a time.
    """
    X, Y, num_batches = _windows(corpus, batch_size, num_steps, offset, generator)
    X, Y = X.reshape(batch_size, -1), Y.reshape(batch_size, -1)
    for i in range(num_batches):
        yield X[:, i * num_steps:(i + 1) * num_steps], Y[:, i * num_steps:(i + 1) * num_steps]


class SeqDataLoader:
    """Random or sequential minibatches of a corpus kept on its device, a fresh offset each epoch (chapter 17)."""

    def __init__(self, corpus: torch.Tensor | Sequence[int], batch_size: int, num_steps: int,
                 random_iter: bool = False, seed: int = 0, device: torch.device | str | None = None):
        corpus = _as_corpus(corpus)
        self.num_batches, self.slack = plan_epoch(len(corpus), batch_size, num_steps)
        self.corpus = corpus.to(device) if device is not None else corpus
        self.batch_size, self.num_steps, self.random_iter = batch_size, num_steps, random_iter
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.num_batches

    @property
    def tokens_per_epoch(self) -> int:
        """How many (input, target) pairs one epoch holds."""
        return self.num_batches * self.batch_size * self.num_steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler = seq_data_iter_random if self.random_iter else seq_data_iter_sequential
        return sampler(self.corpus, self.batch_size, self.num_steps, generator=self.generator)


def load_data_time_machine(batch_size: int, num_steps: int, random_iter: bool = False, max_tokens: int = -1,
                           token: str = "char", seed: int = 0,
                           device: torch.device | str | None = None) -> tuple[SeqDataLoader, Vocab]:
    """Return a loader of The Time Machine and its vocabulary, the corpus kept on `device` (chapter 18)."""
    corpus, vocab = load_corpus_time_machine(max_tokens, token)
    device = torch.device(device) if device is not None else get_device()
    return SeqDataLoader(corpus, batch_size, num_steps, random_iter, seed, device), vocab


# ---------------------------------------------------------------- training language models


def grad_clipping(params: nn.Module | Iterable[torch.Tensor], theta: float) -> torch.Tensor:
    """Rescale all gradients by min(1, theta / ||g||) over their global norm ||g|| and return ||g|| (chapter 18).

    Like `torch.nn.utils.clip_grad_norm_` it adds 1e-6 to the norm and never synchronises with the device.
    """
    if not isinstance(theta, int | float) or not math.isfinite(theta) or theta <= 0:
        raise ValueError(f"theta must be a positive finite number, got {theta!r}")
    params = params.parameters() if isinstance(params, nn.Module) else params
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads]))
    factor = (theta / (norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(factor)
    return norm


def perplexity(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return exp of the mean cross-entropy of logits (n, vocab) against labels (n,) (chapter 18)."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits of shape (n, vocab) and labels of shape (n,), "
                         f"got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return torch.exp(F.cross_entropy(logits, labels))


def detach_state(state: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Cut a recurrent state (a tensor or a tuple of tensors) from the graph of earlier batches (chapter 18)."""
    return state.detach() if isinstance(state, torch.Tensor) else tuple(s.detach() for s in state)


@dataclass
class LMHistory:
    """Per-epoch perplexity of a language model and the measured throughput (chapter 18)."""

    perplexity: list[float] = field(default_factory=list)
    tokens_per_sec: float = 0.0
    device: str = "cpu"


def predict(prefix: str, num_preds: int, net: nn.Module, vocab: Vocab,
            device: torch.device | str | None = None) -> str:
    """Warm the state up on `prefix`, then append `num_preds` greedily predicted characters (chapter 18).

    `net(X, state)` maps X of shape (batch, steps) to logits of shape (steps * batch, vocab) and a new state;
    `net.begin_state(batch_size, device)` returns the initial state.
    """
    if not prefix:
        raise ValueError("prefix must hold at least one token")
    device = network_device(net, device)
    with evaluation_mode(net), torch.no_grad():
        state = net.begin_state(1, device)
        if len(prefix) > 1:
            _, state = net(torch.tensor([vocab[list(prefix[:-1])]], device=device), state)
        last = torch.tensor([[vocab[prefix[-1]]]], device=device)
        outputs = []
        for _ in range(num_preds):
            logits, state = net(last, state)
            last = logits.argmax(dim=1).reshape(1, 1)
            outputs.append(last)
    new = vocab.to_tokens(torch.cat(outputs).flatten()) if outputs else []
    return prefix + "".join(new)


def train_language_model(net: nn.Module, train_iter: Iterable, optimizer: torch.optim.Optimizer, epochs: int, *,
                         theta: float | None = 1.0, reset_state: bool | None = None,
                         device: torch.device | str | None = None, vocab: Vocab | None = None,
                         prefix: str = "time traveller", log_lines: int = 10, plot: bool = True,
                         scheduler=None, quiet: bool = False, checkpoint: str | Path | None = None) -> LMHistory:
    """Train a recurrent language model with gradient clipping and return its per-epoch perplexity (chapter 18).

    The state is reset before every batch when `reset_state` (default: `train_iter.random_iter`), and otherwise
    carried over and detached. Metrics stay on the device and are read once per epoch; about `log_lines`
    epochs print their perplexity (with a sample from `prefix` when `vocab` is given). `scheduler`, `quiet`
    and `checkpoint` work as in `train_classifier`.
    """
    check_epochs(epochs)
    device = torch.device(device) if device is not None else get_device()
    reset_state = getattr(train_iter, "random_iter", True) if reset_state is None else reset_state
    net.to(device)
    every = max(1, epochs // max(1, log_lines))
    live = LivePlot(xlabel="epoch", legend=["perplexity"], xlim=(1, epochs)) if plot else None
    history = LMHistory(device=describe_device(device))
    state = checkpoint_state(net, optimizer, scheduler, train_iter) if checkpoint else None

    def run_epoch() -> EpochResult:
        return train_lm_epoch(net, train_iter, optimizer, theta, reset_state, device, scheduler)

    def replay(epoch: int, draw: bool = False) -> None:
        if live:
            live.add(epoch, [history.perplexity[epoch - 1]], draw=draw)

    def record(epoch: int, result: EpochResult) -> str | None:
        history.perplexity.append(_exp(result.loss))
        report = epoch % every == 0 or epoch == epochs
        replay(epoch, draw=report)
        if report:
            sample = f", {predict(prefix, 40, net, vocab, device)!r}" if vocab is not None else ""
            return f"perplexity {history.perplexity[-1]:.2f}{sample}"
        return None

    speed = fit(run_epoch, epochs, optimizer=optimizer, history=history, record=record, replay=replay,
                checkpoint=checkpoint, state=state, quiet=quiet)
    history.tokens_per_sec = speed or history.tokens_per_sec
    if not quiet:
        print(f"perplexity {history.perplexity[-1]:.2f}, {history.tokens_per_sec:,.0f} tokens/s on {device}")
    return history


def train_lm_epoch(net: nn.Module, train_iter: Iterable, optimizer, theta: float | None, reset_state: bool,
                   device: torch.device, scheduler=None) -> EpochResult:
    """Train one epoch; return the mean cross-entropy per token, that of the first batch and the tokens (chapter 18).

    Metrics stay on the device and are read once, at the end of the epoch.
    """
    net.train()
    loss_sum, first_loss, n, state = torch.zeros((), device=device), None, 0, None
    clip = (lambda: grad_clipping(net, theta)) if theta is not None else None
    for X, Y in train_iter:
        X, Y = X.to(device, non_blocking=True), Y.to(device, non_blocking=True)
        if state is None or reset_state:  # first batch, or random windows: start from a fresh state
            state = net.begin_state(X.shape[0], device)
        else:  # sequential windows: keep the state, but stop gradients at the batch boundary
            state = detach_state(state)
        logits, state = net(X, state)  # logits of shape (num_steps * batch_size, vocab_size), time-major
        y = Y.T.reshape(-1)  # the targets in the same time-major order
        loss = F.cross_entropy(logits, y)
        take_step(loss, optimizer, scheduler, clip)
        first_loss = loss.detach() if first_loss is None else first_loss
        loss_sum += loss.detach() * y.numel()  # stays on the device: no synchronisation per batch
        n += y.numel()
    if n == 0:
        raise ValueError("the training data held no batches: use a longer corpus or smaller batches")
    loss_sum, first_loss = torch.stack([loss_sum, first_loss]).tolist()
    return EpochResult(loss_sum / n, first_loss, n)


def _exp(loss: float) -> float:
    """Perplexity of a mean cross-entropy, infinite where math.exp would overflow (beyond about 709)."""
    return math.exp(loss) if loss < 700 else math.inf
