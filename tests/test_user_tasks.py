"""evaluation.user_tasks' newer models (resmlp, gru, ae, convnorm), the perl corpus, model/dataset
compatibility and the deterministic fixed sample."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import inner_tasks
from evaluation import user_data as ud
from evaluation import user_tasks as ut


def _spec(model, dataset, **kw):
    kw.setdefault("valid_batch", 8 if ud.DATASETS[dataset].kind == "text" else None)
    return ut.UserTaskSpec(model=model, dataset=dataset, **kw)


def _shapes(params):
    return jax.tree.map(lambda a: tuple(a.shape), params)["params"]


def _check_default_init(params):
    """Every leaf looks drawn by flax's default initializer for its kind: zero biases, unit scales,
    orthogonal GRU recurrent kernels, LeCun-normal other kernels, flax's embedding init."""
    kinds = set()
    for i, (p, x) in enumerate(jax.tree_util.tree_flatten_with_path(params)[0]):
        path = tuple(k.key for k in p)
        x = np.asarray(x, np.float64)
        kinds.add(path[-1])
        if path[-1] in ("bias", "scale"):
            np.testing.assert_array_equal(x, 0.0 if path[-1] == "bias" else 1.0, err_msg=str(path))
            continue
        if path[-1] == "kernel" and path[-2] in ("hr", "hz", "hn"):  # GRUCell's recurrent kernels
            np.testing.assert_allclose(x.T @ x, np.eye(x.shape[1]), atol=1e-5, err_msg=str(path))
            kinds.add("orthogonal")
            continue
        key = jax.random.key(100 + i)
        if path[-1] == "embedding":
            ref = np.asarray(nn.linear.default_embed_init(key, x.shape))
        else:
            assert path[-1] == "kernel", path
            shape = x.shape
            if len(shape) == 3:  # attention's DenseGeneral kernels: flax draws them as a 2-D (fan_in, fan_out) matrix
                shape = (shape[0], shape[1] * shape[2]) if path[-2] in ("query", "key", "value") else \
                    (shape[0] * shape[1], shape[2])
            ref = np.asarray(nn.initializers.lecun_normal()(key, shape))
        tol = 6.0 / math.sqrt(2 * x.size) + 0.02
        assert abs(x.std() / ref.std() - 1) < tol, (path, x.std(), ref.std())
        assert abs(x.mean()) < 6 * ref.std() / math.sqrt(x.size), path
    return kinds


def _same(a, b):
    return jax.tree.all(jax.tree.map(lambda u, v: bool(np.array_equal(np.asarray(u), np.asarray(v))), a, b))


# ------------------------------------------------------------------------------------- models
def test_resmlp_default_init_and_shapes():
    task = _spec("resmlp", "digits", model_kwargs={"width": 32, "depth": 2}).make()
    params = task.init(jax.random.key(0))
    assert _check_default_init(params) == {"kernel", "bias", "scale"}
    p = _shapes(params)
    assert set(p) == {"Dense_0", "ResBlock_0", "ResBlock_1", "LayerNorm_0", "Dense_1"}
    assert p["Dense_0"]["kernel"] == (64, 32) and p["Dense_1"]["kernel"] == (32, 10)
    assert p["ResBlock_1"] == {"LayerNorm_0": {"scale": (32,), "bias": (32,)}, "Dense_0": {"kernel": (32, 128), "bias": (128,)},
                               "Dense_1": {"kernel": (128, 32), "bias": (32,)}}
    user = ut.ResMLP(width=32, depth=2, out=10).init(jax.random.key(0), jnp.zeros((1, 64)))  # what a user writes
    assert _same(params, user)
    batch = task.sample_batch(jax.random.key(1), "train")
    assert batch["x"].shape == (64, 64) and np.isfinite(float(task.loss(params, batch)))
    # the residual stream: with zeroed readouts of every block, the blocks are the identity
    zeroed = jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.zeros_like(a) if "ResBlock" in str(path[1]) and "Dense_1" in str(path[2]) else a, params)
    x, q = np.asarray(batch["x"][:4], np.float64), jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    h = x @ q["Dense_0"]["kernel"] + q["Dense_0"]["bias"]
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
    ref = h @ q["Dense_1"]["kernel"] + q["Dense_1"]["bias"]
    np.testing.assert_allclose(task.spec.module().apply(zeroed, batch["x"][:4]), ref, rtol=1e-4, atol=1e-4)


def test_gru_image_rows_default_init(fashion_mnist_dir):
    del fashion_mnist_dir
    task = _spec("gru", "fashion_mnist", model_kwargs={"hidden": 16}, batch_size=8).make()
    params = task.init(jax.random.key(1))
    assert _check_default_init(params) == {"kernel", "bias", "orthogonal"}
    p = _shapes(params)
    assert set(p) == {"GRUCell_0", "Dense_0"} and p["Dense_0"]["kernel"] == (16, 10)
    assert p["GRUCell_0"]["ir"]["kernel"] == (28, 16) and p["GRUCell_0"]["hn"]["kernel"] == (16, 16)
    assert _same(params, ut.GRU(hidden=16, out=10).init(jax.random.key(1), jnp.zeros((1, 28, 28))))
    batch = task.sample_batch(jax.random.key(2), "train")
    assert batch["x"].shape == (8, 28, 28) and np.isfinite(float(task.loss(params, batch)))
    # rows in order: the same image read bottom-up gives other logits
    module = task.spec.module()
    assert not np.allclose(module.apply(params, batch["x"]), module.apply(params, batch["x"][:, ::-1]), atol=1e-4)
    digits = _spec("gru", "digits", model_kwargs={"hidden": 16})
    assert _shapes(digits.make().init(jax.random.key(0)))["GRUCell_0"]["iz"]["kernel"] == (8, 16)
    x = np.asarray(digits.make().sample_batch(jax.random.key(0), "valid")["x"])
    np.testing.assert_array_equal(x, ut.load_arrays("digits")["valid_x"].reshape(-1, 8, 8))


def test_gru_lm_shares_the_transformer_batch_format():
    gru = _spec("gru", "licenses", model_kwargs={"hidden": 16}, batch_size=4, context=12)
    lm = _spec("lm", "licenses", model_kwargs={"width": 16, "depth": 1, "heads": 2}, batch_size=4, context=12)
    tg, tl = gru.make(), lm.make()
    for split in ("train", "valid"):
        a, b = tg.sample_batch(jax.random.key(3), split), tl.sample_batch(jax.random.key(3), split)
        assert _same(a, b) and set(a) == {"x", "y"} and a["x"].dtype == jnp.int32
    assert _same(gru.fixed_sample(tg.data, "valid"), lm.fixed_sample(tl.data, "valid"))
    params = tg.init(jax.random.key(4))
    assert _check_default_init(params) == {"kernel", "bias", "embedding", "orthogonal"}
    p = _shapes(params)
    assert p["Embed_0"]["embedding"] == (256, 16) and p["Dense_0"]["kernel"] == (16, 256)
    assert p["GRUCell_0"]["iz"]["kernel"] == (16, 16)
    assert _same(params, ut.GRU(hidden=16, out=256, lm=True).init(jax.random.key(4), jnp.zeros((1, 12), jnp.int32)))
    batch = tg.sample_batch(jax.random.key(5), "train")
    logits = gru.module().apply(params, batch["x"])
    assert logits.shape == (4, 12, 256)
    ref = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][..., None], -1).mean()  # next-byte CE
    np.testing.assert_allclose(float(tg.loss(params, batch)), float(ref), rtol=1e-5)
    changed = batch["x"].at[:, 8:].set((batch["x"][:, 8:] + 1) % 256)
    np.testing.assert_allclose(gru.module().apply(params, changed)[:, :8], logits[:, :8], rtol=1e-5, atol=1e-5)


def test_ae_loss_is_numpy_reconstruction_mse():
    spec = _spec("ae", "digits", model_kwargs={"widths": (32, 8)})
    task = spec.make()
    params = task.init(jax.random.key(6))
    assert _check_default_init(params) == {"kernel", "bias"}
    p = _shapes(params)
    assert [p[f"Dense_{i}"]["kernel"] for i in range(4)] == [(64, 32), (32, 8), (8, 32), (32, 64)] and len(p) == 4
    assert [v["kernel"] for v in _shapes(_spec("ae", "iris", model_kwargs={"widths": (6,)}).make().init(
        jax.random.key(0))).values()] == [(4, 6), (6, 4)]
    batch = spec.fixed_sample(task.data, "valid")  # the whole valid split: standardized x, labels unused
    x = np.asarray(batch["x"][0], np.float64)
    np.testing.assert_array_equal(x, ut.load_arrays("digits")["valid_x"])
    recon = np.asarray(spec.module().apply(params, batch["x"][0]), np.float64)
    h, layers = x, [params["params"][f"Dense_{i}"] for i in range(4)]
    for i, layer in enumerate(layers):  # the autoencoder in NumPy
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        h = np.maximum(h, 0) if i < 3 else h
    np.testing.assert_allclose(recon, h, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(task.loss(params, {"x": batch["x"][0], "y": batch["y"][0]})),
                               np.mean((recon - x) ** 2), rtol=1e-5)
    shuffled = {"x": batch["x"][0], "y": batch["y"][0][::-1]}
    assert float(task.loss(params, shuffled)) == float(task.loss(params, {"x": batch["x"][0], "y": batch["y"][0]}))


def test_convnorm_default_init_and_loss(fashion_mnist_dir):
    del fashion_mnist_dir
    task = _spec("convnorm", "fashion_mnist", model_kwargs={"channels": (4, 8)}, batch_size=8).make()
    params = task.init(jax.random.key(7))
    assert _check_default_init(params) == {"kernel", "bias", "scale"}
    p = _shapes(params)
    assert p["Conv_0"]["kernel"] == (3, 3, 1, 4) and p["Conv_1"]["kernel"] == (3, 3, 4, 8)
    assert p["GroupNorm_0"]["scale"] == (4,) and p["GroupNorm_1"]["scale"] == (8,)
    assert p["Dense_0"]["kernel"] == (8, 10) and len(p) == 5  # global average pooling: no flatten
    assert _same(params, ut.ConvNormNet(channels=(4, 8), out=10).init(jax.random.key(7), jnp.zeros((1, 28, 28, 1))))
    batch = task.sample_batch(jax.random.key(8), "train")
    assert batch["x"].shape == (8, 28, 28, 1) and np.isfinite(float(task.loss(params, batch)))
    digits = _spec("convnorm", "digits", model_kwargs={"channels": (4, 8)}).make()
    assert digits.sample_batch(jax.random.key(0), "train")["x"].shape == (64, 8, 8, 1)
    assert np.isfinite(float(digits.loss(digits.init(jax.random.key(0)), digits.sample_batch(jax.random.key(0)))))


# -------------------------------------------------------------------------------- fixed sample
def _rows_sorted(a):
    a = np.asarray(a).reshape(len(a), -1)
    return a[np.lexsort(a.T[::-1])]


def test_fixed_sample_whole_small_split_and_deterministic():
    spec = _spec("mlp", "iris", model_kwargs={"widths": (8,)})
    task = spec.make()
    arrs = ut.load_arrays("iris")
    for split in ("train", "valid"):
        s = spec.fixed_sample(task.data, split)
        n = len(arrs[f"{split}_x"])
        assert s["x"].shape == (1, n, 4) and s["y"].shape == (1, n)
        both = lambda x, y: np.concatenate([np.asarray(x).reshape(n, -1), np.asarray(y).reshape(n, 1)], 1)
        np.testing.assert_array_equal(_rows_sorted(both(s["x"][0], s["y"][0])),
                                      _rows_sorted(both(arrs[f"{split}_x"], arrs[f"{split}_y"])))
    jitted = jax.jit(spec.fixed_sample, static_argnums=(1, 2))
    assert _same(jitted(task.data, "valid", 2048), spec.fixed_sample(task.data, "valid"))
    params = task.init(jax.random.key(0))
    loss = jax.jit(lambda p, d: jax.lax.map(lambda c: task.loss(p, c), spec.fixed_sample(d, "valid")).mean())
    assert float(loss(params, task.data)) == float(loss(params, task.data))
    with pytest.raises(ValueError, match="split"):
        spec.fixed_sample(task.data, "test")


def test_fixed_sample_fashion_mnist_size_and_preprocessing(fashion_mnist_dir):
    del fashion_mnist_dir
    arrs = ut.load_arrays("fashion_mnist")
    perm = np.random.default_rng(0).permutation(len(arrs["valid_x"]))
    expect = (arrs["valid_x"][perm[:2048]] / np.float32(255.0) - arrs["mean"]) / arrs["std"]
    for model, kw, shape in [("mlp", {"widths": (8,)}, (784,)), ("convnorm", {"channels": (4,)}, (28, 28, 1)),
                             ("gru", {"hidden": 4}, (28, 28))]:
        spec = _spec(model, "fashion_mnist", model_kwargs=kw)
        task = spec.make()
        s = jax.jit(spec.fixed_sample, static_argnums=1)(task.data, "valid")
        assert s["x"].shape == (8, 256, *shape) and s["y"].shape == (8, 256)
        np.testing.assert_allclose(np.asarray(s["x"]).reshape(2048, 28, 28), expect, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(s["y"]).ravel(), arrs["valid_y"][perm[:2048]])
        assert _same(s, spec.fixed_sample(task.data, "valid"))
    again = spec.fixed_sample(task.data, "train", size=1000)  # equal chunks: 4 × 250
    assert again["x"].shape == (4, 250, 28, 28) and len(np.unique(np.asarray(again["y"]))) == 10
    params = task.init(jax.random.key(0))
    loss = jax.jit(lambda p, d: jax.lax.map(lambda c: task.loss(p, c), spec.fixed_sample(d, "valid")).mean())
    first = float(loss(params, task.data))
    assert np.isfinite(first) and first == float(loss(params, task.data))


def test_fixed_sample_text_even_offsets():
    spec = _spec("gru", "licenses", model_kwargs={"hidden": 8}, context=16)
    task = spec.make()
    stream = ut.load_arrays("licenses")["valid"]
    s = spec.fixed_sample(task.data, "valid")
    assert s["x"].shape == s["y"].shape == (4, 16, 16) and s["x"].dtype == jnp.int32
    seqs = np.concatenate([np.asarray(s["x"]), np.asarray(s["y"][..., -1:])], -1).reshape(64, 17)
    np.testing.assert_array_equal(np.asarray(s["x"])[..., 1:], np.asarray(s["y"])[..., :-1])
    np.testing.assert_array_equal(seqs[0], stream[:17])
    np.testing.assert_array_equal(seqs[-1], stream[-17:])
    starts = np.linspace(0, len(stream) - 17, 64).round().astype(int)
    np.testing.assert_array_equal(seqs, np.stack([stream[a:a + 17] for a in starts]))
    assert _same(s, jax.jit(spec.fixed_sample, static_argnums=1)(task.data, "valid"))


# ---------------------------------------------------------------------------------- perl corpus
def test_perl_corpus(monkeypatch, tmp_path):
    monkeypatch.delenv(ud.PERL_ENV, raising=False)
    try:
        files = ut.perl_files()
    except ut.UserDataError as e:
        pytest.skip(f"perl-base is not installed: {e}")
    assert files == sorted(files) and all(f.suffix == ".pm" and "perl-base" in f.parts for f in files)
    assert any(f.name == "strict.pm" for f in files)
    data = ud.DATASETS["perl"].loader()
    total = sum(f.stat().st_size for f in files)
    assert len(data["train"]) + len(data["valid"]) == total and 0.08 < len(data["valid"]) / total < 0.12
    first = files[0].read_bytes()
    np.testing.assert_array_equal(data["train"][:10], np.frombuffer(first[:10], np.uint8))
    task = _spec("gru", "perl", model_kwargs={"hidden": 8}, context=16).make()
    assert np.isfinite(float(task.loss(task.init(jax.random.key(0)), task.sample_batch(jax.random.key(0)))))
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "B.pm").write_bytes(b"package A::B;\n1;\n" * 20)
    (tmp_path / "notes.txt").write_text("not perl")
    monkeypatch.setenv(ud.PERL_ENV, str(tmp_path))
    assert ut.perl_files() == [tmp_path / "A" / "B.pm"]


def test_perl_missing_is_a_user_data_error(monkeypatch, tmp_path):
    monkeypatch.setenv(ud.PERL_ENV, str(tmp_path))  # an empty directory
    with pytest.raises(ut.UserDataError, match="Perl corpus not found.*perl-base.*LOPT_PERL_DIR") as e:
        ud.DATASETS["perl"].loader()
    assert isinstance(e.value, inner_tasks.DatasetNotFoundError)
    monkeypatch.setenv(ud.PERL_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ut.UserDataError, match="nowhere"):
        ut.perl_files()


# -------------------------------------------------------------------------------- compatibility
TEXT, IMAGES = {"licenses", "perl"}, {"fashion_mnist", "digits"}
FITS = {"mlp": set(ut.DATASETS) - TEXT, "resmlp": set(ut.DATASETS) - TEXT, "ae": set(ut.DATASETS) - TEXT,
        "conv": IMAGES, "convnorm": IMAGES, "gru": IMAGES | TEXT, "lm": TEXT}


def test_every_incompatible_pair_is_refused():
    assert set(FITS) == set(ut.MODELS) and {"perl", "licenses", "digits", "iris"} <= set(ut.DATASETS)
    needs = {"lm": "a text dataset", "conv": "an image dataset", "convnorm": "an image dataset",
             "gru": r"an image dataset \(read row by row\) or a text dataset \(a byte LM\)",
             "mlp": "a non-text dataset",
             "resmlp": "a non-text dataset", "ae": "a non-text dataset"}
    refused = 0
    for model, fits in FITS.items():
        for dataset, info in ut.DATASETS.items():
            if dataset in fits:
                _spec(model, dataset)  # builds without loading anything
                continue
            refused += 1
            with pytest.raises(ValueError, match=rf"model '{model}' does not fit {info.kind} dataset '{dataset}': "
                                                 rf"it needs {needs[model]}; datasets it fits: .*'{sorted(fits)[0]}'"):
                _spec(model, dataset)
    assert refused == 3 * 2 + 2 * 7 + 5 + 7  # mlp/resmlp/ae on text, convnets off images, gru on tabular, lm
    with pytest.raises(ValueError, match="unknown model 'rnn'"):
        _spec("rnn", "iris")
    with pytest.raises(ValueError, match="give valid_batch a number"):
        ut.UserTaskSpec(model="gru", dataset="perl", model_kwargs={"hidden": 8})


# --------------------------------------------------------- the first models and data preparation
def test_mlp_default_init_and_shapes():
    task = _spec("mlp", "iris", model_kwargs={"widths": (64, 64)}).make()
    params = task.init(jax.random.key(3))
    assert _check_default_init(params) == {"kernel", "bias"}
    same = task.spec.module().init(jax.random.key(3), np.zeros((1, 4), np.float32))  # what a user writes
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), params, same))
    wide = jax.eval_shape(_spec("mlp", "digits", model_kwargs={"widths": (1024, 1024)}).make().init,
                          jax.random.key(0))["params"]
    assert [wide[f"Dense_{i}"]["kernel"].shape for i in range(3)] == [(64, 1024), (1024, 1024), (1024, 10)]


def test_conv_default_init(fashion_mnist_dir):
    del fashion_mnist_dir
    task = _spec("conv", "fashion_mnist", model_kwargs={"channels": (8, 16), "hidden": 64}).make()
    params = task.init(jax.random.key(4))
    assert _check_default_init(params) == {"kernel", "bias"}
    p = params["params"]
    assert p["Conv_0"]["kernel"].shape == (3, 3, 1, 8) and p["Conv_1"]["kernel"].shape == (3, 3, 8, 16)
    assert p["Dense_0"]["kernel"].shape == (7 * 7 * 16, 64)
    batch = task.sample_batch(jax.random.key(0), "train")
    assert batch["x"].shape == (64, 28, 28, 1) and task.loss(params, batch).shape == ()


def test_transformer_default_init_and_causality():
    task = _spec("lm", "licenses", model_kwargs={"width": 64, "depth": 2, "heads": 4}, context=32).make()
    params = task.init(jax.random.key(5))
    assert _check_default_init(params) == {"kernel", "bias", "embedding", "scale"}
    p = params["params"]
    assert p["Block_0"]["MultiHeadDotProductAttention_0"]["query"]["kernel"].shape == (64, 4, 16)
    assert len([k for k in p if k.startswith("Block_")]) == 2
    module = task.spec.module()
    tokens = np.random.default_rng(0).integers(0, 256, (1, 32))
    changed = tokens.copy()
    changed[0, 20:] = (changed[0, 20:] + 1) % 256
    a, b = module.apply(params, tokens), module.apply(params, changed)
    np.testing.assert_allclose(a[0, :20], b[0, :20], rtol=1e-5, atol=1e-5)  # no position sees the future
    assert not np.allclose(a[0, 20:], b[0, 20:])


@pytest.mark.parametrize("name, regression", [("iris", False), ("wine", False), ("breast_cancer", False),
                                              ("digits", False), ("diabetes", True), ("linnerud", True)])
def test_sklearn_data_standardized_and_split(name, regression):
    import sklearn.datasets
    from sklearn.model_selection import train_test_split

    got = ud.DATASETS[name].loader()
    again = ud.DATASETS[name].loader()
    for k in got:
        np.testing.assert_array_equal(got[k], again[k])  # deterministic
    bunch = getattr(sklearn.datasets, f"load_{name}")()
    x, y = np.asarray(bunch.data, np.float64), np.asarray(bunch.target)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=0.2, random_state=0, stratify=None if regression else y)
    mean, std = x_tr.mean(0), x_tr.std(0)
    std = np.where(std == 0, 1.0, std)
    np.testing.assert_allclose(got["train_x"], (x_tr - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["valid_x"], (x_va - mean) / std, rtol=1e-5, atol=1e-5)
    assert len(got["train_x"]) + len(got["valid_x"]) == len(x) and len(got["valid_x"]) == math.ceil(0.2 * len(x))
    if regression:
        y_tr = y_tr.reshape(len(y_tr), -1)
        assert got["train_y"].shape == y_tr.shape and got["train_y"].dtype == np.float32
        np.testing.assert_allclose(got["train_y"].mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(got["train_y"].std(0), 1, atol=1e-4)
    else:
        np.testing.assert_array_equal(got["train_y"], y_tr)
        np.testing.assert_array_equal(got["valid_y"], y_va)


def test_fashion_mnist_standardized(fashion_mnist_dir):
    del fashion_mnist_dir
    arrs = ut.load_arrays("fashion_mnist")
    assert arrs["train_x"].shape == (60000, 28, 28) and arrs["valid_x"].shape == (10000, 28, 28)
    spec = ut.UserTaskSpec(model="mlp", model_kwargs={"widths": (8,)}, dataset="fashion_mnist", batch_size=4096)
    x = np.asarray(spec.make().sample_batch(jax.random.key(0), "train")["x"])
    assert x.shape == (4096, 784) and abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05


def test_licence_corpus_is_not_meta_training_and_a_changed_directory_is_read(monkeypatch, tmp_path):
    files = ut.text_files()
    assert files and all(f.is_file() and not f.is_symlink() for f in files)
    assert not any(f.suffix == ".py" for f in files)
    data = ut.load_arrays("licenses")
    total = sum(f.stat().st_size for f in files)
    assert len(data["train"]) + len(data["valid"]) == total and 0.08 < len(data["valid"]) / total < 0.12
    monkeypatch.setenv(ut.TEXT_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(inner_tasks.DatasetNotFoundError, match="text corpus not found.*nowhere"):
        ut.load_arrays("licenses")  # the cache is per source: the new directory is read
