"""Networks built for the importer tests: weights that are exact multiples of a power-of-two
step ``S0`` (so the float arithmetic of the expectations is exact), NIR chains, snnTorch-shaped
state dicts, and the expected spikes written out with Python integers."""

import numpy as np

import nir

S0 = 2.0 ** -7          # the weight step of the exact networks
Q = 127                 # 8-bit weights: max |W_int|


def _rng(base_seed, *key):
    return np.random.default_rng([base_seed, *key])


def _int_weights(rng, inputs, outputs, top=Q):
    """(outputs, inputs) integers in [-top/2, top] (excitatory on the whole, so that the
    test networks spike) with max == top exactly (which fixes the scale)."""
    w = rng.integers(-(top // 2), top + 1, size=(outputs, inputs))
    w[0, 0] = top
    return w


def _lif(n, thr, k=None, v_reset=None, v_leak=0.0):
    """A NIR LIF whose Euler decay is exactly 1 - 2**-k (tau = 2**k) and input gain 1 (r = tau);
    k=None: an IF node."""
    if k is None:
        return nir.IF(r=np.ones(n), v_threshold=np.full(n, thr, float),
                      v_reset=None if v_reset is None else np.full(n, v_reset, float))
    tau = np.full(n, 2.0 ** k)
    return nir.LIF(tau=tau, r=tau.copy(), v_leak=np.full(n, v_leak, float),
                   v_threshold=np.full(n, thr, float),
                   v_reset=None if v_reset is None else np.full(n, v_reset, float))


def _chain(*nodes, names=None):
    """Input -> nodes -> Output, named in order."""
    names = names or [f"n{i}" for i in range(len(nodes))]
    first = nodes[0]
    inputs = first.weight.shape[1] if hasattr(first, "weight") else None
    all_nodes = {"input": nir.Input(input_type=np.array([inputs]))}
    all_nodes.update(zip(names, nodes))
    last = (nodes[-1].output_type or {}).get("output")
    all_nodes["output"] = nir.Output(output_type=None if last is None else np.asarray(last))
    order = ["input", *names, "output"]
    return nir.NIRGraph(nodes=all_nodes, edges=list(zip(order, order[1:])), type_check=False)


def _exact_net(rng, sizes=(20, 8, 4), thetas=(300, 150), leaks=(3, 2), bias=True):
    """Integer parameters and the NIR graph of the same network in float (units of S0)."""
    nodes, names, params = [], [], []
    for l, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        w = _int_weights(rng, n_in, n_out)
        b = rng.integers(-20, 21, size=n_out) if bias else np.zeros(n_out, np.int64)
        nodes += [nir.Affine(weight=w * S0, bias=b * S0), _lif(n_out, thetas[l] * S0, leaks[l])]
        names += [f"affine{l}", f"lif{l}"]
        params.append((w.T, b, thetas[l], leaks[l]))
    return _chain(*nodes, names=names), params


def _expected_spikes(params, inputs, reset="zero", v_bits=16):
    """docs/semantics.md's rules, written out with Python integers: one tick of delay per layer,
    T + L - 1 ticks. Returns the last layer's spikes (ticks, batch, classes) as bool."""
    steps, batch, _ = inputs.shape
    total = steps + len(params) - 1
    lo, hi = -(1 << (v_bits - 1)), (1 << (v_bits - 1)) - 1
    v = [[[0] * w.shape[1] for _ in range(batch)] for w, *_ in params]
    previous = [[[False] * w.shape[1] for _ in range(batch)] for w, *_ in params]
    out = np.zeros((total, batch, params[-1][0].shape[1]), bool)
    for t in range(total):
        now = []
        for l, (w, b, theta, k) in enumerate(params):
            fired_l = []
            for r in range(batch):
                if l == 0:
                    active = [a for a in range(w.shape[0]) if t < steps and inputs[t, r, a]]
                else:
                    active = [a for a in range(w.shape[0]) if previous[l - 1][r][a]]
                fired = []
                for n in range(w.shape[1]):
                    old = v[l][r][n]
                    leaked = old - (old >> k) if k else old
                    new = min(hi, max(lo, leaked + sum(int(w[a, n]) for a in active) + int(b[n])))
                    spike = new >= theta
                    if spike:
                        new = new - theta if reset == "subtract" else 0
                    v[l][r][n] = new
                    fired.append(spike)
                fired_l.append(fired)
            now.append(fired_l)
        previous = now
        out[t] = np.array(now[-1], bool)
    return out


def _spikes(rng, steps, batch, inputs, p=0.3):
    return (rng.random((steps, batch, inputs)) < p).astype(np.uint8)


def _write(tmp_path, graph, name="net.nir"):
    path = tmp_path / name
    nir.write(path, graph)
    return path


class _FakeTensor:
    """Stands in for a torch tensor: only what the importer may call."""

    def __init__(self, array):
        self._array = np.asarray(array)

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self._array


def _snntorch_dict(params, beta, reset_code=1, threshold=None):
    """A state dict shaped exactly like snnTorch's for fc1, lif1, fc2, lif2, ... (Linear weight
    (out, in), bias; Leaky buffers threshold, graded_spikes_factor, reset_mechanism_val, beta,
    mem)."""
    state = {}
    for l, (w, b, theta, _) in enumerate(params, start=1):
        state[f"fc{l}.weight"] = (w.T * S0).astype(np.float32)
        state[f"fc{l}.bias"] = (b * S0).astype(np.float32)
        state[f"lif{l}.threshold"] = np.array(theta * S0 if threshold is None else threshold,
                                              np.float32)
        state[f"lif{l}.graded_spikes_factor"] = np.array(1.0, np.float32)
        state[f"lif{l}.reset_mechanism_val"] = np.array(reset_code)
        state[f"lif{l}.beta"] = np.array(beta[l - 1], np.float32)
        state[f"lif{l}.mem"] = np.zeros(1, np.float32)
    return state
