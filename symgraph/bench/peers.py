"""M1 and M2 in the systems users would pick instead: PyTorch eager and JAX jit.

Used only when importable (never a project dependency). Each builder starts from the same
initial weights as the symgraph graph (workloads.state_arrays) and does the same work: same
layers, dropout rates, loss, optimizer formula and batch-norm moving averages. Each returns
`(step, sync)`: `step(x, y)` runs one training step on NumPy batches and returns the loss in
the system's own type; `sync(loss)` waits until that value is computed (JAX dispatches
asynchronously) and returns it as a float.
"""

from __future__ import annotations

import numpy as np

from symgraph.bench.workloads import ADAM, BN_EPSILON, BN_MOMENTUM, M1_RATES


def _n_layers(state: dict) -> int:
    return sum(1 for k in state if k.startswith("W"))


# --- PyTorch eager --------------------------------------------------------------------------


def torch_m1(state: dict, threads: int, rates=M1_RATES, lr: float = 0.01,
             momentum: float = 0.9):
    """M1 in PyTorch eager: addmm + relu + F.dropout, F.cross_entropy, torch.optim.SGD."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    n = _n_layers(state)
    weights = [torch.tensor(state[f"W{i}"], requires_grad=True) for i in range(n)]
    biases = [torch.tensor(state[f"b{i}"], requires_grad=True) for i in range(n)]
    # torch's momentum buffer is Keras's m / -lr: the same update, the same work
    opt = torch.optim.SGD(weights + biases, lr=lr, momentum=momentum)

    def step(x, y):
        h = F.dropout(torch.from_numpy(x), rates[0], training=True)
        for i in range(n):
            z = torch.addmm(biases[i], h, weights[i])
            if i < n - 1:
                h = F.dropout(torch.relu(z), rates[1], training=True)
        loss = F.cross_entropy(z, torch.from_numpy(y).long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step, lambda loss: float(loss)


def _torch_adam(torch, params, lr, beta1, beta2, eps):
    for fused in (True, False):  # the fused CPU kernel where this build has one
        try:
            opt = torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, fused=fused)
            return opt, "fused" if fused else "foreach"
        except (RuntimeError, TypeError, ValueError):
            continue
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps), "default"


def torch_m2(state: dict, threads: int):
    """M2 in PyTorch eager: mm + F.batch_norm (training) + relu, cross-entropy, Adam."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    n = _n_layers(state)
    weights = [torch.tensor(state[f"W{i}"], requires_grad=True) for i in range(n)]
    bias = torch.tensor(state[f"b{n - 1}"], requires_grad=True)
    gammas = [torch.tensor(state[f"gamma{i}"], requires_grad=True) for i in range(n - 1)]
    betas = [torch.tensor(state[f"beta{i}"], requires_grad=True) for i in range(n - 1)]
    means = [torch.tensor(state[f"moving_mean{i}"]) for i in range(n - 1)]
    variances = [torch.tensor(state[f"moving_var{i}"]) for i in range(n - 1)]
    opt, mode = _torch_adam(torch, weights + [bias] + gammas + betas, ADAM["lr"],
                            ADAM["beta1"], ADAM["beta2"], ADAM["eps"])

    def step(x, y):
        h = torch.from_numpy(x)
        for i in range(n - 1):
            # torch's momentum weights the new value: 1 - Keras's 0.99
            z = F.batch_norm(h @ weights[i], means[i], variances[i], gammas[i], betas[i],
                             training=True, momentum=1.0 - BN_MOMENTUM, eps=BN_EPSILON)
            h = torch.relu(z)
        loss = F.cross_entropy(torch.addmm(bias, h, weights[n - 1]), torch.from_numpy(y).long())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    step.info = {"optimizer": f"torch.optim.Adam ({mode})"}
    return step, lambda loss: float(loss)


# --- JAX jit --------------------------------------------------------------------------------


def configure_jax(cache_dir: str | None = None) -> None:
    """JAX on the CPU with its fastest PRNG and, given a directory, the persistent cache."""
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_default_prng_impl", "rbg")  # JAX's faster generator for dropout
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _jax_ce(jax, jnp, logits, y):
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def jax_m1(state: dict, rates=M1_RATES, lr: float = 0.01, momentum: float = 0.9, seed: int = 0):
    """M1 as one jitted JAX step (forward, grad, SGD momentum), buffers donated."""
    import jax
    import jax.numpy as jnp

    n = _n_layers(state)
    names = [f"{p}{i}" for i in range(n) for p in ("W", "b")]
    params = {k: jnp.asarray(state[k]) for k in names}
    slots = {k: jnp.zeros_like(v) for k, v in params.items()}

    def dropout(key, h, rate):
        keep = jax.random.bernoulli(key, 1.0 - rate, h.shape)
        return jnp.where(keep, h * (1.0 / (1.0 - rate)), 0.0)

    def loss_fn(p, x, y, key):
        keys = jax.random.split(key, n)
        h = dropout(keys[0], x, rates[0])
        for i in range(n):
            z = h @ p[f"W{i}"] + p[f"b{i}"]
            if i < n - 1:
                h = dropout(keys[i + 1], jax.nn.relu(z), rates[1])
        return _jax_ce(jax, jnp, z, y)

    base = jax.random.PRNGKey(seed)

    def train_step(p, m, x, y, i):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y, jax.random.fold_in(base, i))
        m = {k: momentum * m[k] - lr * g[k] for k in p}
        return {k: p[k] + m[k] for k in p}, m, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))
    box = {"p": params, "m": slots, "i": 0}

    def step(x, y):
        box["p"], box["m"], loss = train_step(box["p"], box["m"], x, y, np.int32(box["i"]))
        box["i"] += 1
        return loss

    return step, lambda loss: float(loss.block_until_ready())


def jax_m2(state: dict, lr: float = ADAM["lr"], beta1: float = ADAM["beta1"],
           beta2: float = ADAM["beta2"], eps: float = ADAM["eps"]):
    """M2 as one jitted JAX step: BatchNorm MLP, moving averages, Adam (Keras formula)."""
    import jax
    import jax.numpy as jnp

    n = _n_layers(state)
    names = [f"W{i}" for i in range(n)] + [f"b{n - 1}"]
    names += [f"{p}{i}" for i in range(n - 1) for p in ("gamma", "beta")]
    params = {k: jnp.asarray(state[k]) for k in names}
    stats = {k: jnp.asarray(state[k]) for k in state if k.startswith("moving_")}
    slots = {"m": {k: jnp.zeros_like(v) for k, v in params.items()},
             "v": {k: jnp.zeros_like(v) for k, v in params.items()}}

    def loss_fn(p, x, y):
        h, batch_stats = x, {}
        for i in range(n - 1):
            z = h @ p[f"W{i}"]
            mu = z.mean(axis=0)
            var = jnp.mean(jnp.square(z - mu), axis=0)
            h = jax.nn.relu((z - mu) * jax.lax.rsqrt(var + BN_EPSILON) * p[f"gamma{i}"]
                            + p[f"beta{i}"])
            batch_stats[f"moving_mean{i}"], batch_stats[f"moving_var{i}"] = mu, var
        return _jax_ce(jax, jnp, h @ p[f"W{n - 1}"] + p[f"b{n - 1}"], y), batch_stats

    def train_step(p, s, st, x, y, i):
        (loss, batch_stats), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x, y)
        t = (i + 1).astype(jnp.float32)
        alpha = lr * jnp.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
        m = {k: s["m"][k] + (g[k] - s["m"][k]) * (1.0 - beta1) for k in p}
        v = {k: s["v"][k] + (g[k] * g[k] - s["v"][k]) * (1.0 - beta2) for k in p}
        p = {k: p[k] - alpha * m[k] / (jnp.sqrt(v[k]) + eps) for k in p}
        st = {k: st[k] * BN_MOMENTUM + jax.lax.stop_gradient(batch_stats[k])
              * (1.0 - BN_MOMENTUM) for k in st}
        return p, {"m": m, "v": v}, st, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1, 2))
    box = {"p": params, "s": slots, "st": stats, "i": 0}

    def step(x, y):
        box["p"], box["s"], box["st"], loss = train_step(box["p"], box["s"], box["st"], x, y,
                                                         np.int32(box["i"]))
        box["i"] += 1
        return loss

    return step, lambda loss: float(loss.block_until_ready())
