"""Roofline arithmetic against counts done by hand."""

import math

import pytest

from symgraph.bench import roofline as R


def test_matmul_is_2mnk_flops_and_each_operand_moved_once():
    cost = R.matmul(128, 1024, 784)
    assert cost.flops == 2 * 128 * 1024 * 784
    assert cost.bytes == 4 * (128 * 784 + 784 * 1024 + 128 * 1024)
    with_epilogue = R.matmul(2, 3, 4, bias=True, activation=True)
    assert with_epilogue.flops == 2 * 2 * 3 * 4 + 6 + 6  # bias add and relu per output
    assert with_epilogue.bytes == 4 * (8 + 12 + 6 + 3)


def test_elementwise_chain_moves_input_and_output_only_when_fused():
    fused = R.elementwise_chain(1000, ops=16)
    assert (fused.flops, fused.bytes) == (16000, 8000)  # 4 B in + 4 B out per element
    unfused = R.elementwise_unfused(1000, ops=16)
    assert unfused.bytes == 16 * 8000  # every op reads and writes a full array
    assert R.elementwise_chain(10, ops=1, inputs=2, itemsize=8).bytes == 10 * 3 * 8


def test_softmax_cross_entropy_counts():
    # per logit: max, sub, exp, sum, div, scale = 6; per row: log, pick+sub, mean = 3
    cost = R.softmax_cross_entropy(4, 10)
    assert cost.flops == 6 * 40 + 3 * 4
    assert cost.bytes == 4 * 40 * 2 + 4 * 4  # logits in, gradient out, int32 labels


def test_small_kernels_by_hand():
    assert R.reduction(100, 10) == R.Cost(90, 440)
    assert R.adam(10) == R.Cost(120, 280)  # w, g, m, v read; w, m, v written
    assert R.dropout(10) == R.Cost(30, 80)
    assert R.batch_norm(2, 3).bytes == 4 * (4 * 6 + 4 * 3)


def test_roof_picks_the_bound_and_the_fraction():
    roofs = R.Roofs(gflops=200.0, gbps=20.0)
    assert roofs.ridge == 10.0
    gemm = R.matmul(1024, 1024, 1024)
    assert roofs.bound(gemm) == "compute"
    assert roofs.fraction(gemm, gemm.flops / 100e9) == pytest.approx(0.5)
    chain = R.elementwise_chain(1 << 20, 4)
    assert roofs.bound(chain) == "memory"
    assert roofs.fraction(chain, chain.bytes / 10e9) == pytest.approx(0.5)
    assert roofs.attainable_gflops(chain) == pytest.approx(chain.intensity * 20.0)
    assert math.isnan(roofs.fraction(chain, 0.0))
    assert R.rates(R.Cost(2e9, 1e9), 2.0) == {"gflops": 1.0, "gbps": 0.5}
