"""Unit tests of d2l_support.text: tokens, vocabularies, the minibatch samplers and language-model training."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from d2l_support import text

SAMPLERS = [text.seq_data_iter_random, text.seq_data_iter_sequential]


# ---------------------------------------------------------------- tokens and vocabularies


def test_preprocess_keeps_lower_case_letters_and_single_spaces():
    assert text.preprocess("The Time-Machine,\n\n by H. G. Wells [1898]") == "the time machine by h g wells"
    with pytest.raises(TypeError, match="str"):
        text.preprocess(["not", "a", "string"])


def test_tokenize_characters_and_words_of_a_string_and_of_lines():
    assert text.tokenize("ab c", "char") == ["a", "b", " ", "c"]
    assert text.tokenize("the  time\nmachine", "word") == ["the", "time", "machine"]
    assert text.tokenize(["ab", "c d"], "word") == [["ab"], ["c", "d"]]
    assert text.tokenize(["ab", ""], "char") == [["a", "b"], []]


def test_tokenize_rejects_unknown_kinds_and_non_strings():
    with pytest.raises(ValueError, match="token must be one of"):
        text.tokenize("abc", "byte")
    with pytest.raises(TypeError, match="sequence of str"):
        text.tokenize(["ok", 3], "char")


def test_vocab_orders_unk_reserved_then_by_frequency_with_alphabetical_ties():
    vocab = text.Vocab(["b", "a", "c", "a", "b", "a", "d"], reserved_tokens=["<pad>", "<bos>"])
    assert vocab.idx_to_token == ["<unk>", "<pad>", "<bos>", "a", "b", "c", "d"]
    assert vocab.token_freqs == [("a", 3), ("b", 2), ("c", 1), ("d", 1)]
    assert vocab.unk == 0 and len(vocab) == 7
    assert vocab["a"] == 3 and vocab["<bos>"] == 2


def test_vocab_min_freq_and_unseen_tokens_map_to_unk():
    vocab = text.Vocab([["the", "cat"], ["the", "dog", "the"]], min_freq=2)
    assert vocab.idx_to_token == ["<unk>", "the"]
    assert vocab.to_indices(["the", "cat", "zebra"]) == [1, 0, 0]
    assert "cat" in dict(vocab.token_freqs)  # counted, though below min_freq


def test_vocab_breaks_ties_alphabetically_whatever_order_the_tokens_come_in():
    tokens = list("zyxzyw") + ["b", "a"]  # first seen z, y, x, w, b, a: neither alphabetical nor its reverse
    vocab = text.Vocab(tokens)
    assert vocab.token_freqs == [("y", 2), ("z", 2), ("a", 1), ("b", 1), ("w", 1), ("x", 1)]
    assert vocab.idx_to_token == ["<unk>", "y", "z", "a", "b", "w", "x"]
    assert text.Vocab(reversed(tokens)).idx_to_token == vocab.idx_to_token


@pytest.mark.parametrize("min_freq, kept", [(0, ["c", "b", "a"]), (1, ["c", "b", "a"]), (2, ["c", "b"]),
                                            (3, ["c"]), (4, [])])
def test_vocab_keeps_a_token_seen_exactly_min_freq_times_and_drops_one_seen_fewer(min_freq, kept):
    tokens = ["a"] + ["b"] * 2 + ["c"] * 3
    vocab = text.Vocab(tokens, min_freq=min_freq)
    assert vocab.idx_to_token == ["<unk>", *kept]
    assert vocab.token_freqs == [("c", 3), ("b", 2), ("a", 1)]  # every token is counted
    assert vocab[["a", "b", "c"]] == [vocab.token_to_idx.get(tok, 0) for tok in "abc"]
    assert [vocab[tok] == vocab.unk for tok in "abc"] == [tok not in kept for tok in "abc"]


def test_reserved_and_unknown_tokens_keep_their_places_even_when_they_occur_in_the_text():
    tokens = ["<pad>", "x", "<unk>", "<unk>", "<unk>", "<pad>", "y", "y"]
    vocab = text.Vocab(tokens, reserved_tokens=["<bos>", "<pad>"])
    assert vocab.idx_to_token == ["<unk>", "<bos>", "<pad>", "y", "x"]  # each once, in the order given
    assert vocab["<unk>"] == vocab.unk == 0 and vocab["<bos>"] == 1 and vocab["<pad>"] == 2
    assert vocab.token_to_idx == {tok: i for i, tok in enumerate(vocab.idx_to_token)}
    assert vocab[["zebra", "y", ""]] == [0, 3, 0] and vocab.to_tokens(vocab["zebra"]) == "<unk>"
    rare = text.Vocab(["a", "a"], min_freq=5, reserved_tokens=["<eos>"])  # reserved: kept though never seen
    assert rare.idx_to_token == ["<unk>", "<eos>"] and rare["a"] == rare.unk


def test_vocab_round_trip_and_index_errors():
    vocab = text.Vocab(list("hello world"))
    tokens = list("low")
    assert vocab.to_tokens(vocab.to_indices(tokens)) == tokens
    assert vocab.to_tokens(torch.tensor(vocab.to_indices(tokens))) == tokens
    assert vocab.to_tokens(0) == "<unk>"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.to_tokens(len(vocab))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.to_tokens([-1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(min_freq=-1), "min_freq"),
    (dict(min_freq=1.5), "min_freq"),
    (dict(reserved_tokens=["<unk>"]), "reserved_tokens"),
    (dict(reserved_tokens=["<pad>", "<pad>"]), "reserved_tokens"),
])
def test_vocab_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        text.Vocab(["a"], **kwargs)


def test_vocab_rejects_non_token_items():
    with pytest.raises(TypeError, match="tokens must be str"):
        text.Vocab([["a"], [1]])


def test_load_corpus_time_machine_characters_and_words():
    corpus, vocab = text.load_corpus_time_machine()
    assert corpus.dtype == torch.long and corpus.ndim == 1 and len(corpus) == 173_427
    assert len(vocab) == 28 and set(vocab.idx_to_token[1:]) == set("abcdefghijklmnopqrstuvwxyz ")
    assert "".join(vocab.to_tokens(corpus[:16])) == "the time machine"
    short, short_vocab = text.load_corpus_time_machine(max_tokens=10_000)
    assert len(short) == 10_000 and short_vocab.to_tokens(short) == vocab.to_tokens(corpus[:10_000])
    words, word_vocab = text.load_corpus_time_machine(token="word")
    assert word_vocab.to_tokens(words[:3]) == ["the", "time", "machine"]


@pytest.mark.parametrize("max_tokens", [0, -2, 2.5])
def test_load_corpus_rejects_bad_max_tokens(max_tokens):
    with pytest.raises(ValueError, match="max_tokens"):
        text.load_corpus_time_machine(max_tokens=max_tokens)


# ---------------------------------------------------------------- samplers


def epoch_positions(sampler, num_tokens, batch_size, num_steps, offset):
    """All input positions of one epoch started at `offset`, with a corpus whose tokens are their positions."""
    corpus = torch.arange(num_tokens)
    return torch.cat([X.flatten() for X, _ in sampler(corpus, batch_size, num_steps, offset=offset)])


def test_plan_epoch_counts_batches_and_slack():
    assert text.plan_epoch(35, 2, 5) == (3, 4)
    assert text.plan_epoch(11, 2, 5) == (1, 0)
    assert text.plan_epoch(173_427, 32, 35) == (154, 946)
    with pytest.raises(ValueError, match="too short .* at least 11 tokens"):
        text.plan_epoch(10, 2, 5)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        text.plan_epoch(100, 0, 5)
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
        text.plan_epoch(100, 2, 2.0)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_batches_have_the_right_shape_and_targets_are_inputs_shifted(sampler):
    corpus = torch.arange(100) * 7  # values differ from positions
    batches = list(sampler(corpus, 3, 4, generator=torch.Generator().manual_seed(0)))
    assert len(batches) == text.plan_epoch(100, 3, 4)[0] == 8
    for X, Y in batches:
        assert X.shape == Y.shape == (3, 4) and X.dtype == Y.dtype == torch.long
        assert torch.equal(Y, X + 7)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_epoch_covers_one_contiguous_range_exactly_once(sampler):
    num_tokens, batch_size, num_steps = 97, 2, 5
    num_batches, slack = text.plan_epoch(num_tokens, batch_size, num_steps)
    n = num_batches * batch_size * num_steps
    for offset in range(slack + 1):
        positions = epoch_positions(sampler, num_tokens, batch_size, num_steps, offset)
        assert torch.equal(positions.sort().values, torch.arange(offset, offset + n))


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("num_tokens, batch_size, num_steps",
                         [(11, 2, 5), (35, 2, 5), (36, 2, 5), (1000, 4, 10), (1037, 3, 7), (10_000, 32, 35)])
def test_every_position_with_a_successor_is_reachable(sampler, num_tokens, batch_size, num_steps):
    _, slack = text.plan_epoch(num_tokens, batch_size, num_steps)
    seen = torch.zeros(num_tokens - 1, dtype=torch.bool)
    for offset in (0, slack):  # the two extreme offsets already cover everything
        seen[epoch_positions(sampler, num_tokens, batch_size, num_steps, offset)] = True
    assert seen.all()


def test_a_random_offset_visits_every_value_from_0_to_slack():
    loader = text.SeqDataLoader(torch.arange(35), 2, 5, random_iter=True, seed=0)
    offsets = {min(X.min().item() for X, _ in loader) for _ in range(300)}
    assert offsets == set(range(loader.slack + 1))


def test_sequential_batches_continue_each_other_row_by_row():
    batches = list(text.seq_data_iter_sequential(torch.arange(1000), 4, 10, generator=torch.Generator()))
    for (X0, Y0), (X1, _) in itertools.pairwise(batches):
        assert torch.equal(X1[:, 0], X0[:, -1] + 1)
        assert torch.equal(X1[:, 0], Y0[:, -1])
    rows = torch.cat([X for X, _ in batches], dim=1)
    assert torch.equal(rows[:, 1:] - rows[:, :-1], torch.ones_like(rows[:, 1:]))


def test_random_batches_are_shuffled_windows():
    batches = [X for X, _ in text.seq_data_iter_random(torch.arange(1000), 4, 10, offset=0,
                                                       generator=torch.Generator().manual_seed(0))]
    starts = torch.cat([X[:, 0] for X in batches])
    assert torch.equal(starts.sort().values, torch.arange(0, 960, 10))
    assert not torch.equal(starts, torch.arange(0, 960, 10))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samplers_reject_bad_offsets_and_corpora(sampler):
    with pytest.raises(ValueError, match=r"offset must be an int in \[0, 4\]"):
        list(sampler(torch.arange(35), 2, 5, offset=5))
    with pytest.raises(ValueError, match="1-D LongTensor"):
        list(sampler(torch.zeros(4, 20, dtype=torch.long), 2, 5))
    with pytest.raises(ValueError, match="1-D LongTensor"):
        list(sampler(torch.arange(35.0), 2, 5))
    with pytest.raises(ValueError, match="too short"):
        list(sampler(list(range(8)), 2, 5))
    assert len(list(sampler(list(range(35)), 2, 5))) == 3  # a list of ints works too


def test_loader_is_reproducible_and_reports_its_size():
    corpus = torch.arange(500)
    first = [X for X, _ in text.SeqDataLoader(corpus, 4, 6, random_iter=True, seed=3)]
    second = [X for X, _ in text.SeqDataLoader(corpus, 4, 6, random_iter=True, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    loader = text.SeqDataLoader(corpus, 4, 6)
    assert len(loader) == len(list(loader)) == 20 and loader.tokens_per_epoch == 480 and loader.slack == 19


def test_load_data_time_machine_yields_shifted_character_windows():
    loader, vocab = text.load_data_time_machine(8, 12, max_tokens=2000, device="cpu")
    corpus, _ = text.load_corpus_time_machine(max_tokens=2000)
    assert torch.equal(loader.corpus, corpus) and len(vocab) == 27  # no "q" in the first 2,000 characters?
    assert not loader.random_iter and len(loader) == 1999 // 96
    for X, Y in loader:
        assert torch.equal(X[:, 1:], Y[:, :-1])


# ---------------------------------------------------------------- clipping, perplexity, training


def test_grad_clipping_rejects_bad_thresholds_and_handles_no_gradients():
    p = nn.Parameter(torch.ones(3))
    for theta in (0, -1.0, math.inf, math.nan, "1"):
        with pytest.raises(ValueError, match="theta"):
            text.grad_clipping([p], theta)
    assert text.grad_clipping([p], 1.0).item() == 0.0  # no gradient yet


def test_grad_clipping_leaves_small_gradients_alone():
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([0.3, 0.4])
    norm = text.grad_clipping([p], theta=1.0)
    assert norm.item() == pytest.approx(0.5) and torch.allclose(p.grad, torch.tensor([0.3, 0.4]))


def test_perplexity_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"logits of shape \(n, vocab\)"):
        text.perplexity(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))


def test_detach_state_handles_tensors_and_tuples():
    a = torch.ones(2, requires_grad=True) * 2
    assert not text.detach_state(a).requires_grad
    assert all(not s.requires_grad for s in text.detach_state((a, a * 3)))


class CountingLM(nn.Module):
    """A toy language model whose state counts the batches it has seen since the last reset."""

    def __init__(self, vocab_size):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, vocab_size)
        self.incoming = []

    def begin_state(self, batch_size, device):
        return torch.zeros(batch_size, device=device)

    def forward(self, X, state):
        self.incoming.append((state.min().item(), state.requires_grad))
        logits = self.embedding(X.T).reshape(-1, self.embedding.num_embeddings)
        return logits, state + self.embedding.weight.sum() * 0 + 1  # part of the graph, so detaching matters


@pytest.mark.parametrize("random_iter, expected", [(True, [0, 0, 0]), (False, [0, 1, 2])])
def test_training_resets_or_carries_and_detaches_the_state(random_iter, expected):
    loader = text.SeqDataLoader(torch.arange(31) % 5, 2, 5, random_iter=random_iter)
    net = CountingLM(5)
    text.train_language_model(net, loader, torch.optim.SGD(net.parameters(), lr=0.1), 1, device="cpu", plot=False)
    assert [count for count, _ in net.incoming] == expected
    assert not any(requires_grad for _, requires_grad in net.incoming)


def test_training_learns_a_periodic_sequence_and_predict_continues_it(capsys):
    corpus = torch.tensor([1, 2, 3, 4] * 200)
    vocab = text.Vocab(list("abcd"))
    loader = text.SeqDataLoader(corpus, 8, 10)
    net = CountingLM(5)
    history = text.train_language_model(net, loader, torch.optim.Adam(net.parameters(), lr=0.1), 10,
                                        device="cpu", vocab=vocab, prefix="ab", plot=False)
    assert history.perplexity[-1] < 1.1 < history.perplexity[0] and history.tokens_per_sec > 0
    assert text.predict("ab", 6, net, vocab) == "abcdabcd"
    assert "perplexity" in capsys.readouterr().out
    with pytest.raises(ValueError, match="prefix"):
        text.predict("", 3, net, vocab)


class TinyRNN(nn.Module):
    """A one-layer RNN language model on one-hot inputs that records the tokens and output state of every call."""

    def __init__(self, vocab_size, hidden=8):
        super().__init__()
        self.vocab_size = vocab_size
        self.rnn = nn.RNN(vocab_size, hidden)
        self.output = nn.Linear(hidden, vocab_size)
        self.calls = []

    def begin_state(self, batch_size, device):
        return torch.zeros(1, batch_size, self.rnn.hidden_size, device=device)

    def forward(self, X, state):
        Y, state = self.rnn(F.one_hot(X.T, self.vocab_size).float(), state)
        self.calls.append((X.flatten().tolist(), state))
        return self.output(Y.reshape(-1, Y.shape[-1])), state


def one_token_at_a_time(net, vocab, prefix, num_preds):
    """The reference: feed the prefix token by token, then greedily append `num_preds` tokens; return both."""
    state, generated = net.begin_state(1, "cpu"), []
    for tok in prefix:
        logits, state = net(torch.tensor([[vocab[tok]]]), state)
    after_prefix = state
    for _ in range(num_preds):
        generated.append(logits.argmax(dim=1).item())
        logits, state = net(torch.tensor([generated[-1:]]), state)
    return after_prefix, prefix + "".join(vocab.to_tokens(generated))


@pytest.mark.parametrize("prefix", ["f", "ab", "fadedcab"])
def test_predict_warms_the_state_up_on_the_whole_prefix_once(prefix):
    """The state after the prefix is the one of feeding it step by step, and the text is the reference's."""
    torch.manual_seed(0)
    vocab = text.Vocab(list("abcdefgh"))
    net = TinyRNN(len(vocab)).eval()
    with torch.no_grad():
        after_prefix, expected = one_token_at_a_time(net, vocab, prefix, 12)
    net.calls.clear()
    assert text.predict(prefix, 12, net, vocab, device="cpu") == expected
    fed = [tok for tokens, _ in net.calls for tok in tokens]
    assert fed[:len(prefix)] == vocab[list(prefix)] and len(fed) == len(prefix) + 11
    counts = list(itertools.accumulate(len(tokens) for tokens, _ in net.calls))
    state = net.calls[counts.index(len(prefix))][1]  # the state once the whole prefix, and nothing else, is in
    assert torch.allclose(state, after_prefix, atol=1e-6)


class FirstTokenLM(nn.Module):
    """A hand-made language model that predicts, at every step, the first token fed since its state was fresh."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size

    def begin_state(self, batch_size, device):
        return torch.zeros(batch_size, self.vocab_size, device=device)

    def forward(self, X, state):
        logits = []
        for x in X.T:  # one time step of the whole batch
            fresh = state.sum(dim=1, keepdim=True) == 0
            state = torch.where(fresh, F.one_hot(x, self.vocab_size).float(), state)
            logits.append(state)
        return torch.cat(logits), state


def test_the_first_predicted_token_depends_on_the_start_of_the_prefix():
    vocab, net = text.Vocab(list("abcd")), FirstTokenLM(5)
    predictions = {prefix: text.predict(prefix, 2, net, vocab, device="cpu") for prefix in ("abc", "cbc", "dbc")}
    assert predictions == {"abc": "abcaa", "cbc": "cbccc", "dbc": "dbcdd"}
    assert text.predict("b", 2, net, vocab, device="cpu") == "bbb" and text.predict("ab", 0, net, vocab) == "ab"


def test_training_stops_with_advice_on_nan_and_rejects_bad_epochs():
    loader = text.SeqDataLoader(torch.arange(50) % 5, 2, 5)
    net = CountingLM(5)
    with torch.no_grad():
        net.embedding.weight[0, 0] = math.nan
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        text.train_language_model(net, loader, torch.optim.SGD(net.parameters(), lr=0.1), 2, device="cpu",
                                  plot=False)
    with pytest.raises(ValueError, match="epochs"):
        text.train_language_model(net, loader, torch.optim.SGD(net.parameters(), lr=0.1), 0, plot=False)


def test_perplexity_of_training_matches_exp_of_mean_cross_entropy():
    loader = text.SeqDataLoader(torch.arange(61) % 7, 3, 4)
    net = CountingLM(7)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.0)  # no change: the epoch's loss is the model's loss
    result = text.train_lm_epoch(net, loader, optimizer, None, True, torch.device("cpu"))
    ppl, n = math.exp(result.loss), result.examples
    losses = [F.cross_entropy(net(X, net.begin_state(3, "cpu"))[0], Y.T.reshape(-1)).item() for X, Y in
              text.seq_data_iter_sequential(loader.corpus, 3, 4, offset=0)]
    assert n == len(loader) * 12
    assert ppl == pytest.approx(math.exp(sum(losses) / len(losses)), rel=1e-5)


def test_predict_restores_train_mode_even_when_the_network_fails():
    net = CountingLM(5)
    vocab = text.Vocab(list("abcd"))
    calls = []

    def failing_forward(X, state):
        calls.append(net.training)
        raise RuntimeError("broken network")

    net.forward = failing_forward
    with pytest.raises(RuntimeError, match="broken network"):
        text.predict("ab", 3, net, vocab)
    assert calls == [False] and net.training


def test_language_model_training_with_a_scratch_optimizer_explains_a_nan():
    """An optimizer without param_groups still gets its learning rate named in the advice."""
    net = CountingLM(5)
    with torch.no_grad():
        net.embedding.weight[0, 0] = math.nan

    class ScratchSGD:
        lr = 0.25

        def zero_grad(self):
            net.zero_grad()

        def step(self):
            pass

    with pytest.raises(FloatingPointError, match=r"now 0.25"):
        text.train_language_model(net, text.SeqDataLoader(torch.arange(50) % 5, 2, 5), ScratchSGD(), 1,
                                  device="cpu", plot=False)


def test_language_model_training_refuses_an_empty_epoch():
    class NoBatches(text.SeqDataLoader):
        def __iter__(self):
            return iter(())

    net = CountingLM(5)
    with pytest.raises(ValueError, match="no batches"):
        text.train_language_model(net, NoBatches(torch.arange(50) % 5, 2, 5),
                                  torch.optim.SGD(net.parameters(), lr=0.1), 1, device="cpu", plot=False)


def lm_run(path, epochs, **options):
    """Train a toy language model on random windows, resuming from `path` if it exists."""
    torch.manual_seed(0)
    net = CountingLM(7)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    loader = text.SeqDataLoader(torch.arange(200) % 7, 4, 5, random_iter=True)
    history = text.train_language_model(net, loader, optimizer, epochs, device="cpu", plot=False,
                                        scheduler=schedule, checkpoint=path, **options)
    return net, history, schedule


def test_language_model_resumes_exactly_and_steps_its_scheduler(tmp_path, capsys):
    straight, straight_history, schedule = lm_run(tmp_path / "a.pt", 3)
    assert schedule.last_epoch == 3 * 9  # one scheduler step per batch: 9 batches of 4 x 5 tokens per epoch
    assert "epoch 3/3" in capsys.readouterr().out
    lm_run(tmp_path / "b.pt", 2, quiet=True)
    assert capsys.readouterr().out == ""
    resumed, resumed_history, _ = lm_run(tmp_path / "b.pt", 3)
    assert "resumed from" in capsys.readouterr().out
    assert resumed_history.perplexity == straight_history.perplexity
    assert torch.equal(straight.embedding.weight, resumed.embedding.weight)


def test_language_model_trains_in_train_mode_even_if_handed_over_in_eval_mode():
    net = CountingLM(5).eval()
    modes = []
    net.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    text.train_language_model(net, text.SeqDataLoader(torch.arange(31) % 5, 2, 5),
                              torch.optim.SGD(net.parameters(), lr=0.1), 1, device="cpu", plot=False)
    assert modes == [True, True, True]


def test_history_records_the_perplexity_of_the_whole_epoch():
    """With learning rate 0 every epoch measures the same model: its perplexity over all windows, not one batch."""
    loader = text.SeqDataLoader(torch.arange(61) % 7, 3, 4)
    net = CountingLM(7)
    history = text.train_language_model(net, loader, torch.optim.SGD(net.parameters(), lr=0.0), 2, device="cpu",
                                        plot=False, theta=None)
    windows = text.seq_data_iter_sequential(loader.corpus, 3, 4, offset=0)
    losses = [F.cross_entropy(net(X, net.begin_state(3, "cpu"))[0], Y.T.reshape(-1)).item() for X, Y in windows]
    assert len(set(losses)) > 1  # a single batch would give another number
    assert history.perplexity == pytest.approx([math.exp(sum(losses) / len(losses))] * 2, rel=1e-5)
