"""Equation checks for chapter 00: automatic differentiation and gradient descent."""

import pytest
import torch


def f(x):
    """The chapter's objective f(x) = (x - 2)^2 / 2."""
    return (x - 2) ** 2 / 2


def gradient_descent(fn, x0, lr, steps):
    """Gradient descent with autograd, as in the chapter; return the iterates as rows."""
    x = x0.clone().requires_grad_(True)
    path = [x.detach().clone()]
    for _ in range(steps):
        fn(x).backward()
        with torch.no_grad():
            x -= lr * x.grad
        x.grad.zero_()
        path.append(x.detach().clone())
    return torch.stack(path)


def quadratic(A):
    """Return the function x -> x^T A x / 2, whose Hessian is A."""
    return lambda x: x @ A @ x / 2


def random_spd(d, seed):
    """A random symmetric positive definite d x d matrix in float64."""
    M = torch.randn(d, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return M @ M.T + 0.1 * torch.eye(d, dtype=torch.float64)


def test_derivative_of_parabola_is_x_minus_2():
    x = torch.linspace(-5, 7, 49, dtype=torch.float64, requires_grad=True)
    f(x).sum().backward()
    torch.testing.assert_close(x.grad, x.detach() - 2)


@pytest.mark.parametrize("lr", [0.1, 0.4, 1.0, 1.5])
def test_descent_on_parabola_follows_closed_form(lr):
    path = gradient_descent(f, torch.tensor(0.0, dtype=torch.float64), lr, 20).ravel()
    t = torch.arange(21, dtype=torch.float64)
    torch.testing.assert_close(path, 2 + (1 - lr) ** t * (0.0 - 2))


def test_optimizer_sgd_matches_manual_loop():
    x = torch.nn.Parameter(torch.tensor(0.0, dtype=torch.float64))
    optimizer = torch.optim.SGD([x], lr=0.4)
    iterates = []
    for _ in range(15):
        optimizer.zero_grad()
        f(x).backward()
        optimizer.step()
        iterates.append(x.item())
    manual = gradient_descent(f, torch.tensor(0.0, dtype=torch.float64), 0.4, 15)[1:]
    torch.testing.assert_close(torch.tensor(iterates, dtype=torch.float64), manual)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stable_below_2_over_L_and_divergent_above(seed):
    A = random_spd(4, seed)
    L = torch.linalg.eigvalsh(A)[-1].item()
    fn = quadratic(A)
    x0 = torch.ones(4, dtype=torch.float64)
    stable = gradient_descent(fn, x0, 1.9 / L, 400)[-1]
    unstable = gradient_descent(fn, x0, 2.1 / L, 400)[-1]
    assert fn(stable) < 1e-6 * fn(x0)
    assert fn(unstable) > 1e6 * fn(x0)


def test_chapter_quadratic_limit_and_best_rate():
    h = quadratic(torch.diag(torch.tensor([2.0, 4.0], dtype=torch.float64)))  # x1^2 + 2 x2^2
    x0 = torch.tensor([-4.0, 2.0], dtype=torch.float64)
    assert h(gradient_descent(h, x0, 0.49, 300)[-1]) < 1e-6
    assert h(gradient_descent(h, x0, 0.51, 300)[-1]) > 1e3
    # at the best constant rate 2 / (2 + 4) both coordinates shrink by exactly 1/3 per step
    path = gradient_descent(h, x0, 1 / 3, 5)
    torch.testing.assert_close(path[1:], path[:-1] * torch.tensor([1 / 3, -1 / 3], dtype=torch.float64))


def test_contraction_factor_is_largest_eigenvalue_of_iteration_matrix():
    A = random_spd(3, 5)
    lr = 0.5 / torch.linalg.eigvalsh(A)[-1].item()
    path = gradient_descent(quadratic(A), torch.randn(3, dtype=torch.float64), lr, 3)
    M = torch.eye(3, dtype=torch.float64) - lr * A
    torch.testing.assert_close(path[1:], path[:-1] @ M.T)


def test_vector_extremum_of_seed_function():
    def g(x):
        return (x * x).sum() + 4 * x[0] + 5 * x[1] + 3

    point = torch.tensor([0.3, -1.7], dtype=torch.float64, requires_grad=True)
    g(point).backward()
    torch.testing.assert_close(point.grad, 2 * point.detach() + torch.tensor([4.0, 5.0], dtype=torch.float64))
    final = gradient_descent(g, torch.zeros(2, dtype=torch.float64), 0.4, 30)[-1]
    torch.testing.assert_close(final, torch.tensor([-2.0, -2.5], dtype=torch.float64))
    assert g(final).item() == pytest.approx(-7.25)


def test_second_backward_through_freed_graph_fails():
    x = torch.tensor(0.0, requires_grad=True)
    y = f(x)
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retained_graph_gives_stale_gradient():
    x = torch.tensor(0.0, requires_grad=True)
    y = f(x)
    iterates = []
    for _ in range(5):
        y.backward(retain_graph=True)
        assert x.grad.item() == -2.0  # always f'(0), whatever x is now
        with torch.no_grad():
            x -= 0.4 * x.grad
        x.grad.zero_()
        iterates.append(x.item())
    torch.testing.assert_close(torch.tensor(iterates), torch.tensor([0.8, 1.6, 2.4, 3.2, 4.0]))


def test_gradients_accumulate_without_zeroing():
    x = torch.tensor(0.0, requires_grad=True)
    for k in range(1, 4):
        f(x).backward()
        assert x.grad.item() == -2.0 * k


def test_non_scalar_backward_needs_a_vector_and_gives_vjp():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        y.backward(retain_graph=True)
    v = torch.tensor([1.0, 0.0, 0.5])
    y.backward(v)
    torch.testing.assert_close(x.grad, v * 2 * x.detach())
    jacobian = torch.autograd.functional.jacobian(lambda t: t * t, x.detach())
    torch.testing.assert_close(x.grad, v @ jacobian)


def test_ones_vjp_equals_gradient_of_sum():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).backward(torch.ones(3))
    first = x.grad.clone()
    x.grad.zero_()
    (x * x).sum().backward()
    torch.testing.assert_close(first, x.grad)
