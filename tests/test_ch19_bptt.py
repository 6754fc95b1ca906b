"""Equation checks for backpropagation through time, including the errata of the source notes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

f64 = torch.float64


def forward(W_hx, W_hh, W_qh, xs, tau=None):
    """Linear, bias-free RNN from h_0 = 0: states and outputs; the state is detached every `tau` steps if given."""
    h_t, hs, os = torch.zeros(W_hh.shape[0], dtype=f64), [], []
    for t, x_t in enumerate(xs):
        if tau is not None and t % tau == 0:
            h_t = h_t.detach()
        h_t = W_hx @ x_t + W_hh @ h_t
        hs.append(h_t)
        os.append(W_qh @ h_t)
    return hs, os


def grad_h_recursive(dL_do, W_hh, W_qh):
    """dL/dh_T = W_qh^T dL/do_T; dL/dh_t = W_hh^T dL/dh_(t+1) + W_qh^T dL/do_t."""
    grads = [W_qh.T @ dL_do[-1]]
    for t in range(len(dL_do) - 2, -1, -1):
        grads.insert(0, W_hh.T @ grads[0] + W_qh.T @ dL_do[t])
    return torch.stack(grads)


def grad_h_closed_form(dL_do, W_hh, W_qh):
    """dL/dh_t = sum_{i=t}^{T} (W_hh^T)^(T-i) W_qh^T dL/do_(T+t-i), 1-based as in the formula."""
    T = len(dL_do)
    return torch.stack([sum(torch.linalg.matrix_power(W_hh.T, T - i) @ W_qh.T @ dL_do[T + t - i - 1]
                            for i in range(t, T + 1)) for t in range(1, T + 1)])


def scaled_matrix(n, rho, seed=0):
    """A random n x n matrix rescaled to spectral radius rho."""
    A = torch.randn(n, n, dtype=f64, generator=torch.Generator().manual_seed(seed))
    return A * rho / torch.linalg.eigvals(A).abs().max()


@pytest.fixture(params=[(3, 4, 5, 6, 0), (2, 5, 3, 9, 1), (4, 3, 3, 1, 2)], ids=["T6", "T9", "T1"])
def net(request):
    """Random weights, inputs, labels and autograd's gradients of every state, output and weight."""
    d, h, q, T, seed = request.param
    gen = torch.Generator().manual_seed(seed)
    W_hx, W_hh, W_qh = (0.5 * torch.randn(*s, dtype=f64, generator=gen) for s in [(h, d), (h, h), (q, h)])
    for W in (W_hx, W_hh, W_qh):
        W.requires_grad_()
    xs = torch.randn(T, d, dtype=f64, generator=gen)
    ys = torch.randint(0, q, (T,), generator=gen)
    hs, os = forward(W_hx, W_hh, W_qh, xs)
    for v in hs + os:
        v.retain_grad()
    F.cross_entropy(torch.stack(os), ys).backward()
    O = torch.stack(os).detach()
    return dict(W_hx=W_hx, W_hh=W_hh, W_qh=W_qh, xs=xs, ys=ys, T=T, h=h, q=q,
                H=torch.stack(hs).detach(), dL_do=(F.softmax(O, dim=1) - F.one_hot(ys, q)) / T,
                auto_dh=torch.stack([v.grad for v in hs]), auto_do=torch.stack([v.grad for v in os]))


def test_gradient_wrt_outputs_is_softmax_minus_one_hot_over_T(net):
    assert torch.allclose(net["dL_do"], net["auto_do"])


def test_gradient_wrt_states_by_the_backward_recursion(net):
    got = grad_h_recursive(net["dL_do"], net["W_hh"].detach(), net["W_qh"].detach())
    assert torch.allclose(got, net["auto_dh"])


def test_gradient_wrt_states_by_the_closed_form_sum(net):
    got = grad_h_closed_form(net["dL_do"], net["W_hh"].detach(), net["W_qh"].detach())
    assert torch.allclose(got, net["auto_dh"])


def test_gradients_wrt_the_three_weight_matrices(net):
    H, dL_dh = net["H"], net["auto_dh"]
    H_prev = torch.cat([torch.zeros(1, net["h"], dtype=f64), H[:-1]])
    assert torch.allclose(net["dL_do"].T @ H, net["W_qh"].grad)  # the gradient the notes never give
    assert torch.allclose(dL_dh.T @ net["xs"], net["W_hx"].grad)
    assert torch.allclose(dL_dh.T @ H_prev, net["W_hh"].grad)


def test_errata_expansion_without_the_direct_term_disagrees_with_autograd(net):
    W_hh, W_qh, dL_do, T = net["W_hh"].detach(), net["W_qh"].detach(), net["dL_do"], net["T"]
    dropped = torch.stack([
        sum((torch.linalg.matrix_power(W_hh.T, s - t) @ W_qh.T @ dL_do[s] for s in range(t + 1, T)),
            torch.zeros(net["h"], dtype=f64))
        for t in range(T)])
    assert not torch.allclose(dropped, net["auto_dh"])
    assert torch.allclose(net["auto_dh"] - dropped, dL_do @ W_qh)  # exactly the missing W_qh^T dL/do_t


def test_errata_leading_term_without_W_qh_does_not_even_have_matching_shapes():
    W_hh, dL_do_T = torch.randn(4, 4, dtype=f64), torch.randn(5, dtype=f64)  # h = 4, q = 5
    with pytest.raises(RuntimeError):
        torch.linalg.matrix_power(W_hh.T, 2) @ dL_do_T


def test_tanh_recursion_matches_nn_rnn_gradients():
    d, h, q, T = 3, 4, 5, 7
    gen = torch.Generator().manual_seed(3)
    rnn = nn.RNN(d, h, bias=False, dtype=f64)
    W_qh = torch.randn(q, h, dtype=f64, generator=gen)
    xs, ys = torch.randn(T, d, dtype=f64, generator=gen), torch.randint(0, q, (T,), generator=gen)
    states = rnn(xs.unsqueeze(1))[0][:, 0]
    F.cross_entropy(states @ W_qh.T, ys).backward()
    S, W_hh = states.detach(), rnn.weight_hh_l0.detach()
    dL_do = (F.softmax(S @ W_qh.T, dim=1) - F.one_hot(ys, q)) / T
    deltas = torch.zeros(T, h, dtype=f64)
    for t in reversed(range(T)):
        from_next = W_hh.T @ deltas[t + 1] if t < T - 1 else 0
        deltas[t] = (1 - S[t] ** 2) * (from_next + W_qh.T @ dL_do[t])
    S_prev = torch.cat([torch.zeros(1, h, dtype=f64), S[:-1]])
    assert torch.allclose(deltas.T @ xs, rnn.weight_ih_l0.grad)
    assert torch.allclose(deltas.T @ S_prev, rnn.weight_hh_l0.grad)


@pytest.mark.parametrize("tau", [1, 2, 3, 6, 100])
def test_truncated_bptt_equals_the_sum_cut_at_chunk_ends(tau):
    d, h, q, T = 3, 4, 5, 8
    gen = torch.Generator().manual_seed(4)
    W_hx, W_hh, W_qh = (0.5 * torch.randn(*s, dtype=f64, generator=gen) for s in [(h, d), (h, h), (q, h)])
    W_hh.requires_grad_()
    xs, ys = torch.randn(T, d, dtype=f64, generator=gen), torch.randint(0, q, (T,), generator=gen)
    hs, os = forward(W_hx, W_hh, W_qh, xs, tau=tau)
    F.cross_entropy(torch.stack(os), ys).backward()
    H = torch.stack(hs).detach()
    dL_do = (F.softmax(torch.stack(os).detach(), dim=1) - F.one_hot(ys, q)) / T
    Wd = W_hh.detach()
    chunk_end = [min((t // tau + 1) * tau, T) for t in range(T)]
    dL_dh = torch.stack([sum(torch.linalg.matrix_power(Wd.T, s - t) @ W_qh.T @ dL_do[s]
                             for s in range(t, chunk_end[t])) for t in range(T)])
    H_prev = torch.cat([torch.zeros(1, h, dtype=f64), H[:-1]])
    assert torch.allclose(dL_dh.T @ H_prev, W_hh.grad)
    full = grad_h_closed_form(dL_do, Wd, W_qh)
    assert torch.allclose(dL_dh, full) == (tau >= T)  # truncation changes the gradient unless nothing is cut


def test_powers_follow_the_eigendecomposition_and_the_spectral_radius():
    W = scaled_matrix(8, 0.9, seed=5)
    eigvals, Q = torch.linalg.eig(W)
    assert eigvals.abs().max().item() == pytest.approx(0.9)
    W7 = (Q @ torch.diag(eigvals ** 7) @ torch.linalg.inv(Q)).real
    assert torch.allclose(W7, torch.linalg.matrix_power(W, 7))
    norm = torch.linalg.matrix_norm(torch.linalg.matrix_power(W, 2000), ord=2).item()
    assert norm ** (1 / 2000) == pytest.approx(0.9, abs=2e-3)  # Gelfand: ||W^k||^(1/k) -> rho


@pytest.mark.parametrize("rho, vanishes", [(0.7, True), (1.3, False)])
def test_jacobian_of_distant_states_vanishes_or_explodes_with_the_spectral_radius(rho, vanishes):
    W = scaled_matrix(16, rho, seed=6)

    def unroll(h_0):
        h_t = h_0
        for _ in range(40):
            h_t = W @ h_t
        return h_t

    J = torch.autograd.functional.jacobian(unroll, torch.randn(16, dtype=f64))
    assert torch.allclose(J, torch.linalg.matrix_power(W, 40))  # dh_40/dh_0 = W_hh^40
    norm = torch.linalg.matrix_norm(J, ord=2).item()
    assert norm < 1e-3 if vanishes else norm > 1e3
