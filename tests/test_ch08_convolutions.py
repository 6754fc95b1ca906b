"""The convolutions chapter's (08) own helpers: cross-correlation, padding and stride, channels, pooling."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from chapter_code import from_chapter
from torch import nn

from d2l_support.cnn import out_size

(corr2d, conv2d_true, conv2d_fft, corr2d_padded, corr2d_multi_in, corr2d_multi_in_out, corr2d_1x1,
 pool2d) = from_chapter("08_convolutions", "corr2d", "conv2d_true", "conv2d_fft", "corr2d_padded", "corr2d_multi_in",
                        "corr2d_multi_in_out", "corr2d_1x1", "pool2d")

X09 = torch.arange(9.0).reshape(3, 3)
K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])


# ---------------------------------------------------------------- cross-correlation


@pytest.mark.parametrize("seed", range(30))
def test_corr2d_matches_conv2d_on_random_shapes(seed):
    gen = torch.Generator().manual_seed(seed)
    n_h, n_w = torch.randint(1, 12, (2,), generator=gen).tolist()
    k_h = torch.randint(1, n_h + 1, (), generator=gen).item()
    k_w = torch.randint(1, n_w + 1, (), generator=gen).item()
    X = torch.randn(n_h, n_w, generator=gen, dtype=torch.float64)
    K_rand = torch.randn(k_h, k_w, generator=gen, dtype=torch.float64)
    expected = F.conv2d(X[None, None], K_rand[None, None])[0, 0]
    assert corr2d(X, K_rand).shape == (n_h - k_h + 1, n_w - k_w + 1)
    torch.testing.assert_close(corr2d(X, K_rand), expected, check_dtype=False)  # the chapter stores float32


def test_worked_example_of_the_notes():
    assert corr2d(X09, K).tolist() == [[19, 25], [37, 43]]


def test_padded_worked_example_of_seed_003():
    padded = F.pad(X09, (1, 1, 1, 1))
    assert padded.shape == (5, 5)
    expected = [[0, 3, 8, 4], [9, 19, 25, 10], [21, 37, 43, 16], [6, 7, 8, 0]]
    assert corr2d(padded, K).tolist() == expected
    assert F.conv2d(X09[None, None], K[None, None], padding=1)[0, 0].tolist() == expected


def test_strided_worked_example():
    assert corr2d_padded(X09, K, padding=(1, 1), stride=(3, 2)).tolist() == [[0, 8], [6, 8]]


def test_convolution_is_cross_correlation_with_flipped_kernel():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(7, 9, generator=gen, dtype=torch.float64)
    K_rand = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    # true convolution from its definition: Y[i, j] = sum_ab X[i - a + k_h - 1, j - b + k_w - 1] K[a, b]
    k_h, k_w = K_rand.shape
    direct = torch.zeros(7 - k_h + 1, 9 - k_w + 1, dtype=torch.float64)
    for i, j in itertools.product(range(direct.shape[0]), range(direct.shape[1])):
        direct[i, j] = sum(X[i + k_h - 1 - a, j + k_w - 1 - b] * K_rand[a, b] for a in range(k_h) for b in range(k_w))
    torch.testing.assert_close(corr2d(X, K_rand.flip(0, 1)), direct, check_dtype=False)
    torch.testing.assert_close(conv2d_true(X, K_rand), direct, check_dtype=False)
    # and via the Fourier transform (the chapter's independent check)
    torch.testing.assert_close(conv2d_fft(X, K_rand), direct)
    # an asymmetric kernel gives different outputs for the two operations
    assert not torch.allclose(corr2d(X, K_rand), direct.float())
    assert corr2d(X09, K.flip(0, 1)).tolist() == [[5, 11], [23, 29]]


def test_edge_detector():
    X = torch.ones(6, 8)
    X[:, 2:6] = 0
    Y = corr2d(X, torch.tensor([[1.0, -1.0]]))
    expected_row = [0, 1, 0, 0, 0, -1, 0]
    assert Y.tolist() == [expected_row] * 6
    assert (corr2d(X.t(), torch.tensor([[1.0, -1.0]])) == 0).all()


def test_gradient_descent_learns_the_edge_kernel():
    X = torch.ones(1, 1, 6, 8)
    X[..., 2:6] = 0
    Y = F.conv2d(X, torch.tensor([[[[1.0, -1.0]]]]))
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, kernel_size=(1, 2), bias=False)
    for _ in range(30):
        loss = ((conv(X) - Y) ** 2).sum()
        conv.zero_grad()
        loss.backward()
        with torch.no_grad():
            conv.weight -= 3e-2 * conv.weight.grad
    torch.testing.assert_close(conv.weight.detach().reshape(-1), torch.tensor([1.0, -1.0]), atol=1e-2, rtol=0)


def test_shift_tolerance_of_max_pooling():
    """The solution of exercise ex-08-shift."""
    X = torch.ones(6, 8)
    X[:, 2:6] = 0
    edge = torch.tensor([[1.0, -1.0]])
    before = corr2d(X, edge).abs()
    after = corr2d(torch.roll(X, 1, dims=1), edge).abs()
    assert before[0].nonzero().flatten().tolist() == [1, 5]
    assert after[0].nonzero().flatten().tolist() == [2, 6]
    pooled_before = pool2d(before, (2, 2), "max", stride=(1, 1))
    pooled_after = pool2d(after, (2, 2), "max", stride=(1, 1))
    both = ((pooled_before == 1) & (pooled_after == 1))[0].nonzero().flatten().tolist()
    assert both == [1, 5]


# ---------------------------------------------------------------- padding and stride


def test_output_size_formula_matches_conv2d_over_a_grid():
    checked = 0
    for n, k, p, s in itertools.product(range(1, 11), range(1, 7), range(0, 4), range(1, 5)):
        if n + 2 * p < k:
            continue
        Y = F.conv2d(torch.zeros(1, 1, n, n + 1), torch.zeros(1, 1, k, k), padding=p, stride=s)
        window = dict(kernel=k, padding=p, stride=s)
        assert Y.shape[-2:] == (out_size(n, **window), out_size(n + 1, **window)), (n, k, p, s)
        checked += 1
    assert checked > 800


@pytest.mark.parametrize(("n", "k", "p", "s"),
                         [(224, 7, 3, 2), (28, 5, 2, 1), (14, 5, 0, 1), (7, 3, 1, 3), (8, 2, 0, 2)])
def test_output_size_formula_matches_nn_conv2d(n, k, p, s):
    layer = nn.Conv2d(2, 3, kernel_size=k, padding=p, stride=s)
    side = out_size(n, kernel=k, padding=p, stride=s)
    assert layer(torch.zeros(1, 2, n, n)).shape == (1, 3, side, side)


def test_notes_form_of_the_formula_is_the_same():
    """Seed 003 writes floor((n - k + p_total + s) / s) with p_total the padding of both sides."""
    for n, k, p, s in itertools.product(range(1, 15), range(1, 8), range(0, 4), range(1, 5)):
        if n + 2 * p >= k:
            assert (n - k + 2 * p + s) // s == out_size(n, kernel=k, padding=p, stride=s)


def test_same_padding_and_divisible_stride():
    for n, k, s in itertools.product([8, 12, 24], [1, 3, 5, 7], [1, 2, 4]):
        assert out_size(n, kernel=k, padding=(k - 1) // 2, stride=s) == n // s


@pytest.mark.parametrize("seed", range(20))
def test_padded_strided_corr2d_matches_conv2d(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    n_h, n_w, k_h, k_w = torch.randint(1, 8, (4,), generator=gen).tolist()
    p_h, p_w = torch.randint(0, 3, (2,), generator=gen).tolist()
    s_h, s_w = torch.randint(1, 4, (2,), generator=gen).tolist()
    k_h, k_w = min(k_h, n_h + 2 * p_h), min(k_w, n_w + 2 * p_w)  # the kernel must fit the padded input
    X = torch.randn(n_h, n_w, generator=gen, dtype=torch.float64)
    K_rand = torch.randn(k_h, k_w, generator=gen, dtype=torch.float64)
    expected = F.conv2d(X[None, None], K_rand[None, None], padding=(p_h, p_w), stride=(s_h, s_w))[0, 0]
    torch.testing.assert_close(corr2d_padded(X, K_rand, (p_h, p_w), (s_h, s_w)), expected, check_dtype=False)


# ---------------------------------------------------------------- channels


K_TWO = torch.stack([torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.tensor([[1.0, 2.0], [3.0, 4.0]])])


def test_two_channel_example_as_printed_in_seed_003():
    """Errata errata-two-channel-example: both inputs 1..9 do not give the printed result."""
    one_to_nine = torch.arange(1.0, 10.0).reshape(3, 3)
    as_printed = torch.stack([one_to_nine, one_to_nine])
    assert corr2d_multi_in(as_printed, K_TWO).tolist() == [[62, 78], [110, 126]]
    assert corr2d_multi_in(as_printed, K_TWO).tolist() != [[56, 72], [104, 120]]


def test_two_channel_example_corrected():
    corrected = torch.stack([X09, torch.arange(1.0, 10.0).reshape(3, 3)])
    assert corr2d_multi_in(corrected, K_TWO).tolist() == [[56, 72], [104, 120]]
    assert F.conv2d(corrected[None], K_TWO[None])[0, 0].tolist() == [[56, 72], [104, 120]]


def test_multi_in_out_matches_conv2d():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(3, 6, 7, generator=gen, dtype=torch.float64)
    K_rand = torch.randn(4, 3, 2, 3, generator=gen, dtype=torch.float64)
    Y = corr2d_multi_in_out(X, K_rand)
    assert Y.shape == (4, 5, 5)
    torch.testing.assert_close(Y, F.conv2d(X[None], K_rand)[0], check_dtype=False)
    corrected = torch.stack([X09, torch.arange(1.0, 10.0).reshape(3, 3)])
    K_three = torch.stack([K_TWO, K_TWO + 1, K_TWO + 2])
    assert corr2d_multi_in_out(corrected, K_three)[1].tolist() == [[76, 100], [148, 172]]


def test_1x1_convolution_is_a_dense_layer_over_channels():
    torch.manual_seed(0)
    conv, dense = nn.Conv2d(5, 3, kernel_size=1), nn.Linear(5, 3)
    with torch.no_grad():
        dense.weight.copy_(conv.weight.reshape(3, 5))
        dense.bias.copy_(conv.bias)
    X = torch.randn(2, 5, 4, 6)
    torch.testing.assert_close(conv(X), dense(X.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
    # and as one matrix product over flattened pixels
    by_matmul = corr2d_1x1(X[0], conv.weight) + conv.bias[:, None, None]
    torch.testing.assert_close(by_matmul, conv(X)[0])


# ---------------------------------------------------------------- pooling


def test_pooling_worked_examples():
    assert pool2d(X09, (2, 2), "max", stride=(1, 1)).tolist() == [[4, 5], [7, 8]]
    assert pool2d(X09, (2, 2), "avg", stride=(1, 1)).tolist() == [[2, 3], [5, 6]]


@pytest.mark.parametrize("seed", range(25))
def test_pooling_matches_nn_layers_with_padding_and_stride(seed):
    gen = torch.Generator().manual_seed(200 + seed)
    n_h, n_w = torch.randint(3, 9, (2,), generator=gen).tolist()
    p_h, p_w = torch.randint(1, 4, (2,), generator=gen).tolist()
    pad = torch.randint(0, min(p_h, p_w) // 2 + 1, (), generator=gen).item()
    stride = tuple(torch.randint(1, 4, (2,), generator=gen).tolist())
    X = torch.randn(n_h, n_w, generator=gen, dtype=torch.float64)
    max_layer = nn.MaxPool2d((p_h, p_w), stride, pad)
    avg_layer = nn.AvgPool2d((p_h, p_w), stride, pad)
    for mode, layer in (("max", max_layer), ("avg", avg_layer)):
        torch.testing.assert_close(pool2d(X, (p_h, p_w), mode, pad, stride), layer(X[None, None])[0, 0],
                                   check_dtype=False)


def test_average_pooling_counts_padded_zeros():
    X = torch.ones(1, 1, 2, 2)
    corner = nn.AvgPool2d(2, stride=1, padding=1)(X)[0, 0, 0, 0].item()
    assert corner == pytest.approx(0.25)  # one real 1 among four entries, three of them padding
    assert nn.MaxPool2d(2, stride=1, padding=1)(-X)[0, 0, 0, 0].item() == -1  # padding is -inf for max


def test_pooling_keeps_channels_and_average_pooling_is_a_convolution():
    X = torch.randn(2, 3, 8, 6)
    assert nn.MaxPool2d(3, padding=1, stride=2)(X).shape == (2, 3, 4, 3)
    one_channel = X[:, :1]
    torch.testing.assert_close(F.conv2d(one_channel, torch.full((1, 1, 2, 2), 0.25), stride=2),
                               nn.AvgPool2d(2)(one_channel))


def test_exercise_shapes():
    """Exercise ex-08-shapes: a ResNet stem takes 224 to 56."""
    Y = nn.MaxPool2d(3, 2, 1)(nn.Conv2d(1, 1, 7, 2, 3)(torch.zeros(1, 1, 224, 224)))
    assert Y.shape == (1, 1, 56, 56)
    assert out_size(out_size(224, kernel=7, padding=3, stride=2), kernel=3, padding=1, stride=2) == 56


def test_exercise_diagonal_edges():
    """Exercise ex-08-diagonal."""
    X = torch.tril(torch.ones(8, 8))
    edge = torch.tensor([[1.0, -1.0]])
    Y = corr2d(X, edge)
    assert Y.nonzero().tolist() == [[i, i] for i in range(7)] and (Y[Y != 0] == 1).all()
    Y_t = corr2d(X.t(), edge)
    assert Y_t.nonzero().tolist() == [[i, i - 1] for i in range(1, 8)] and (Y_t[Y_t != 0] == -1).all()
    Y_k = corr2d(X, edge.t())
    assert Y_k.nonzero().tolist() == [[i, i + 1] for i in range(7)] and (Y_k[Y_k != 0] == -1).all()
