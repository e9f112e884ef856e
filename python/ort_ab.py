"""Two ONNX files of one model in ONNX Runtime, interleaved: their outputs' largest
relative difference and each file's time at batch 1 256², batch 1 512² and batch 2 256²
(CPU, 2 intra-op threads; five rounds, alternating which file goes first, each the median
of 7 runs after 2 warm-ups).

    wsunet bench --phases inference --reps 1 --onnx old.onnx   # with one build
    wsunet bench --phases inference --reps 1 --onnx new.onnx   # with the other
    python python/ort_ab.py old.onnx new.onnx                   # needs onnxruntime, numpy
"""
import sys, time, statistics, numpy as np, onnxruntime as ort
files = sys.argv[1:3]
opts = ort.SessionOptions(); opts.intra_op_num_threads = 2; opts.inter_op_num_threads = 1
sess = {f: ort.InferenceSession(f, opts, providers=["CPUExecutionProvider"]) for f in files}
name = sess[files[0]].get_inputs()[0].name
shapes = [(1, 3, 256, 256), (1, 3, 512, 512), (2, 3, 256, 256)]
rng = np.random.default_rng(0)
for shape in shapes:
    x = rng.standard_normal(shape, dtype=np.float32)
    outs = {f: sess[f].run(None, {name: x})[0] for f in files}
    a, b = outs[files[0]], outs[files[1]]
    rel = np.abs(a - b).max() / np.abs(a).max()
    rounds = {f: [] for f in files}
    for r in range(5):
        for f in (files if r % 2 == 0 else files[::-1]):
            for _ in range(2): sess[f].run(None, {name: x})
            ts = []
            for _ in range(7):
                t = time.perf_counter(); sess[f].run(None, {name: x}); ts.append(time.perf_counter() - t)
            rounds[f].append(1000 * statistics.median(ts))
    med = {f: statistics.median(rounds[f]) for f in files}
    print(f"{shape}: old {med[files[0]]:.1f} ms {[round(v,1) for v in rounds[files[0]]]}  new {med[files[1]]:.1f} ms {[round(v,1) for v in rounds[files[1]]]}  ratio old/new {med[files[0]]/med[files[1]]:.3f}  max rel diff {rel:.1e}")
