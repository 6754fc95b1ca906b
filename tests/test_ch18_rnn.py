"""Equation checks for the recurrent neural networks chapter: the recurrence, clipping, perplexity."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from d2l_support import text


class RNNScratch(nn.Module):
    """The chapter's one-layer tanh RNN language model, written from the equations."""

    def __init__(self, vocab_size, num_hiddens, sigma=0.01):
        super().__init__()
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.W_xh = nn.Parameter(torch.randn(vocab_size, num_hiddens) * sigma)
        self.W_hh = nn.Parameter(torch.randn(num_hiddens, num_hiddens) * sigma)
        self.b_h = nn.Parameter(torch.zeros(num_hiddens))
        self.W_hq = nn.Parameter(torch.randn(num_hiddens, vocab_size) * sigma)
        self.b_q = nn.Parameter(torch.zeros(vocab_size))

    def begin_state(self, batch_size, device):
        return torch.zeros(batch_size, self.num_hiddens, device=device)

    def forward(self, X, H):
        outputs = []
        for X_t in F.one_hot(X.T, self.vocab_size).float():
            H = torch.tanh(X_t @ self.W_xh + H @ self.W_hh + self.b_h)
            outputs.append(H @ self.W_hq + self.b_q)
        return torch.cat(outputs), H


class RNNModel(nn.Module):
    """The chapter's concise model around nn.RNN."""

    def __init__(self, vocab_size, num_hiddens):
        super().__init__()
        self.vocab_size = vocab_size
        self.rnn = nn.RNN(vocab_size, num_hiddens)
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def begin_state(self, batch_size, device):
        return torch.zeros(self.rnn.num_layers, batch_size, self.rnn.hidden_size, device=device)

    def forward(self, X, state):
        states, state = self.rnn(F.one_hot(X.T, self.vocab_size).float(), state)
        return self.dense(states.reshape(-1, states.shape[-1])), state


def copy_into_nn_rnn(scratch: RNNScratch) -> RNNModel:
    """An RNNModel computing exactly the function of `scratch` (b_hh = 0, weights transposed)."""
    model = RNNModel(scratch.vocab_size, scratch.num_hiddens)
    with torch.no_grad():
        model.rnn.weight_ih_l0.copy_(scratch.W_xh.T)
        model.rnn.weight_hh_l0.copy_(scratch.W_hh.T)
        model.rnn.bias_ih_l0.copy_(scratch.b_h)
        model.rnn.bias_hh_l0.zero_()
        model.dense.weight.copy_(scratch.W_hq.T)
        model.dense.bias.copy_(scratch.b_q)
    return model


@pytest.fixture
def pair():
    torch.manual_seed(0)
    scratch = RNNScratch(7, 6, sigma=0.5)
    X = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(1))
    return scratch, copy_into_nn_rnn(scratch), X


def test_recurrence_is_one_layer_on_the_concatenation():
    gen = torch.Generator().manual_seed(0)
    X_t, H, W_xh, W_hh = (torch.randn(*s, generator=gen) for s in [(3, 4), (3, 5), (4, 5), (5, 5)])
    assert torch.allclose(X_t @ W_xh + H @ W_hh, torch.cat([X_t, H], 1) @ torch.cat([W_xh, W_hh], 0), atol=1e-6)


def test_scratch_step_matches_nn_rnn_with_copied_weights(pair):
    scratch, model, X = pair
    H0 = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    logits, H = scratch(X, H0)
    logits_nn, H_nn = model(X, H0.unsqueeze(0))
    assert logits.shape == (5 * 3, 7) and H.shape == (3, 6)
    assert torch.allclose(logits, logits_nn, atol=1e-6) and torch.allclose(H, H_nn[0], atol=1e-6)


def test_one_step_of_the_recurrence_by_hand(pair):
    scratch, _, X = pair
    H0 = torch.zeros(3, 6)
    _, H1 = scratch(X[:, :1], H0)
    x = F.one_hot(X[:, 0], 7).float()
    assert torch.allclose(H1, torch.tanh(x @ scratch.W_xh + H0 @ scratch.W_hh + scratch.b_h))


def test_scratch_gradients_match_nn_rnn(pair):
    scratch, model, X = pair
    Y = (X + 1) % 7
    F.cross_entropy(scratch(X, scratch.begin_state(3, "cpu"))[0], Y.T.reshape(-1)).backward()
    F.cross_entropy(model(X, model.begin_state(3, "cpu"))[0], Y.T.reshape(-1)).backward()
    assert torch.allclose(scratch.W_xh.grad, model.rnn.weight_ih_l0.grad.T, atol=1e-6)
    assert torch.allclose(scratch.W_hh.grad, model.rnn.weight_hh_l0.grad.T, atol=1e-6)
    assert torch.allclose(scratch.b_h.grad, model.rnn.bias_ih_l0.grad, atol=1e-6)
    assert torch.allclose(scratch.W_hq.grad, model.dense.weight.grad.T, atol=1e-6)


@pytest.mark.parametrize("theta", [0.05, 0.5, 100.0])
def test_grad_clipping_matches_clip_grad_norm(pair, theta):
    scratch, _, X = pair
    F.cross_entropy(scratch(X, scratch.begin_state(3, "cpu"))[0], X.T.reshape(-1)).backward()
    grads = [p.grad.clone() for p in scratch.parameters()]
    norm = text.grad_clipping(scratch, theta)
    ours = [p.grad.clone() for p in scratch.parameters()]
    for p, g in zip(scratch.parameters(), grads):
        p.grad.copy_(g)
    norm_torch = nn.utils.clip_grad_norm_(scratch.parameters(), theta)
    assert torch.allclose(norm, norm_torch)
    assert all(torch.allclose(a, p.grad) for a, p in zip(ours, scratch.parameters()))
    clipped = torch.linalg.vector_norm(torch.stack([g.norm() for g in ours]))
    assert clipped.item() == pytest.approx(min(theta, norm.item()), rel=1e-4)
    if theta > norm:  # below the threshold nothing changes
        assert all(torch.equal(a, g) for a, g in zip(ours, grads))


def test_clipping_keeps_the_direction_of_the_whole_gradient():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    norm = text.grad_clipping([a, b], theta=1.0)
    assert norm.item() == pytest.approx(5.0)
    assert torch.allclose(torch.cat([a.grad, b.grad]), torch.tensor([0.6, 0.0, 0.8]), atol=1e-6)


def test_perplexity_is_exp_of_mean_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(20, 28, generator=gen), torch.randint(0, 28, (20,), generator=gen)
    nll = -F.log_softmax(logits, dim=1)[torch.arange(20), labels].mean()
    assert torch.allclose(text.perplexity(logits, labels), torch.exp(nll))
    assert torch.allclose(text.perplexity(logits, labels), torch.exp(F.cross_entropy(logits, labels)))


def test_perplexity_baselines_best_uniform_worst():
    labels = torch.tensor([3, 1, 4, 1, 5])
    rows = torch.arange(5)
    certain = torch.full((5, 28), -math.inf)
    certain[rows, labels] = 0.0
    wrong = torch.zeros(5, 28)
    wrong[rows, labels] = -math.inf
    assert text.perplexity(certain, labels).item() == pytest.approx(1.0)
    assert text.perplexity(torch.zeros(5, 28), labels).item() == pytest.approx(28.0)
    assert math.isinf(text.perplexity(wrong, labels).item())


def test_scratch_rnn_learns_a_repeating_text_that_needs_memory():
    corpus = torch.tensor([1, 2, 1, 3] * 90)  # after "1" comes "2" or "3": the token before "1" decides
    torch.manual_seed(0)
    net = RNNScratch(5, 16, sigma=0.1)
    history = text.train_language_model(net, text.SeqDataLoader(corpus, 4, 6), torch.optim.Adam(net.parameters(),
                                        lr=0.05), 10, theta=1.0, device="cpu", plot=False, log_lines=1)
    assert history.perplexity[-1] < 1.2 < history.perplexity[0]  # a bigram model cannot beat sqrt(2) = 1.41


def test_training_without_clipping_blows_up_where_clipping_does_not():
    corpus, _ = text.load_corpus_time_machine(max_tokens=2_000)
    loader = text.SeqDataLoader(corpus, 16, 20)
    torch.manual_seed(0)
    init = RNNScratch(28, 64)
    final = {}
    for theta in (None, 0.1):
        net = RNNScratch(28, 64)
        net.load_state_dict(init.state_dict())
        optimizer = torch.optim.SGD(net.parameters(), lr=10.0)
        for _ in range(4):
            loss = text.train_lm_epoch(net, loader, optimizer, theta, False, torch.device("cpu")).loss
        final[theta] = math.exp(loss) if loss < 700 else math.inf
    assert final[0.1] < 28 < final[None]  # uniform guessing over 28 characters scores 28 (inf also counts)


def stacked_rnn_by_hand(rnn, X, H0=None):
    """Output and final state of a multi-layer, possibly bidirectional tanh nn.RNN, rebuilt from its parameters."""
    directions = 2 if rnn.bidirectional else 1
    finals = []
    for layer in range(rnn.num_layers):
        outputs = []
        for direction, suffix in enumerate(["", "_reverse"][:directions]):
            W_ih, W_hh, b_ih, b_hh = (getattr(rnn, f"{name}_l{layer}{suffix}")
                                      for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            H = torch.zeros(X.shape[1], rnn.hidden_size) if H0 is None else H0[layer * directions + direction]
            states = [None] * len(X)
            for t in reversed(range(len(X))) if suffix else range(len(X)):
                H = torch.tanh(X[t] @ W_ih.T + b_ih + H @ W_hh.T + b_hh)
                states[t] = H
            outputs.append(torch.stack(states))
            finals.append(H)
        X = torch.cat(outputs, dim=2)
    return X, torch.stack(finals)


@pytest.mark.parametrize(("num_layers", "bidirectional"), [(1, False), (2, False), (1, True), (2, True), (3, True)])
def test_multilayer_and_bidirectional_shapes_and_values(num_layers, bidirectional):
    steps, batch, inputs, hidden = 5, 3, 4, 6
    directions = 2 if bidirectional else 1
    torch.manual_seed(0)
    rnn = nn.RNN(inputs, hidden, num_layers=num_layers, bidirectional=bidirectional)
    X = torch.randn(steps, batch, inputs, generator=torch.Generator().manual_seed(1))
    H0 = torch.randn(num_layers * directions, batch, hidden, generator=torch.Generator().manual_seed(2))
    for state in (None, H0):
        output, final = rnn(X, state)
        assert output.shape == (steps, batch, directions * hidden)
        assert final.shape == (num_layers * directions, batch, hidden)
        output_hand, final_hand = stacked_rnn_by_hand(rnn, X, state)
        assert torch.allclose(output, output_hand, atol=1e-6) and torch.allclose(final, final_hand, atol=1e-6)
    top = final.reshape(num_layers, directions, batch, hidden)[-1]
    assert torch.equal(top[0], output[-1, :, :hidden])  # forward: the state after the last step
    if bidirectional:
        assert torch.equal(top[1], output[0, :, hidden:])  # backward: the state after the first step
    if bidirectional and num_layers > 1:
        assert rnn.weight_ih_l1.shape == (hidden, 2 * hidden)  # the second layer reads both directions
