"""outer: the outer-optimizer recipe, the task groups' redraw schedule, the inner-step count (the
loop itself runs end to end in test_cli and test_sharding)."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import build, tiny
from outer import OuterOptimizer, outer_step
from estimators import sharding
from outer.groups import Groups


def test_outer_schedule_warms_up_then_decays_to_the_end_rate():
    s = OuterOptimizer(peak_lr=2e-3, end_lr=5e-4, warmup_steps=10)
    schedule = s.schedule(num_steps=100)
    lrs = np.asarray([schedule(t) for t in range(101)])
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(2e-3) and lrs[100] == pytest.approx(5e-4)
    assert np.all(np.diff(lrs[:11]) > 0) and np.all(np.diff(lrs[10:]) <= 1e-12)


def test_outer_step_averages_the_groups_that_produced_an_estimate():
    make = lambda: OuterOptimizer(peak_lr=1e-2, end_lr=1e-2, warmup_steps=0, weight_decay=0.0, clip=1.0).build(50)[0]
    tx, ref_tx = make(), make()
    theta = {"w": jnp.zeros(3)}
    g1, g2 = {"w": jnp.asarray([4.0, 0.0, 0.0])}, {"w": jnp.asarray([0.0, 0.0, 0.0])}

    def expected(grad):
        updates, _ = ref_tx.update(grad, ref_tx.init(theta), theta)
        return np.asarray(optax.apply_updates(theta, updates)["w"])

    new, _, metrics = outer_step(tx, {"w": jnp.zeros(3)}, tx.init(theta), [g1, g2], [0, 0])
    np.testing.assert_allclose(new["w"], expected({"w": jnp.asarray([2.0, 0.0, 0.0])}), rtol=1e-6)
    assert float(metrics["outer/grad_norm"]) == pytest.approx(2.0) and int(metrics["outer/groups_used"]) == 2
    # A dropped group (its zeros) or a non-finite one does not dilute the mean: g1 alone.
    bad = {"w": jnp.asarray([jnp.nan, 0.0, 0.0])}
    for grads, dropped in (([g1, g2], [0, 1]), ([g1, bad], [0, 0])):
        new, _, metrics = outer_step(tx, {"w": jnp.zeros(3)}, tx.init(theta), grads, dropped)
        np.testing.assert_allclose(new["w"], expected(g1), rtol=1e-6)
        assert int(metrics["outer/groups_used"]) == 1 and int(metrics["outer/skipped"]) == 0


def test_a_step_with_no_usable_estimate_is_skipped_whole():
    """No optimizer step, no weight decay, no moment or count update: θ and the state stay."""
    tx, _ = OuterOptimizer(peak_lr=1e-2, end_lr=1e-2, warmup_steps=0, weight_decay=0.5).build(50)
    theta = {"w": jnp.asarray([1.0, -2.0, 3.0])}
    state = tx.init(theta)
    theta, state, _ = outer_step(tx, theta, state, [{"w": jnp.ones(3)}], [0])  # a real step first
    before = jax.tree.map(np.asarray, (theta, state))
    zeros, nan = {"w": jnp.zeros(3)}, {"w": jnp.full(3, jnp.nan)}
    theta, state, metrics = outer_step(tx, theta, state, [zeros, nan], [1, 0])
    jax.tree.map(np.testing.assert_array_equal, (theta, state), before)
    assert int(metrics["outer/skipped"]) == 1 and int(metrics["outer/groups_used"]) == 0
    # The same zeros, not marked dropped, do step: weight decay shrinks θ.
    theta2, _, _ = outer_step(tx, jax.tree.map(jnp.copy, theta), state, [zeros], [0])
    assert np.all(np.abs(np.asarray(theta2["w"])) < np.abs(before[0]["w"]))


def test_groups_are_redrawn_in_turn():
    c = tiny.get_config()
    c.groups.update(num=2, resample_every=10)
    setup = build.build(c)
    groups = Groups(setup, jax.random.key(3), mesh=None)
    epochs = np.asarray([[groups.epoch(g, step) for g in range(2)] for step in range(30)])
    changes = [np.flatnonzero(np.diff(epochs[:, g])) + 1 for g in range(2)]
    np.testing.assert_array_equal(changes[0], [10, 20])
    np.testing.assert_array_equal(changes[1], [5, 15, 25])  # offset by resample_every / num_groups


def test_inner_steps_per_meta_step_sums_the_estimators_declared_counts():
    setup = build.build(tiny.get_config())
    est = setup.make_estimator(setup.family.task(setup.family.sample(jax.random.key(0))))
    assert setup.inner_steps_per_meta_step([est, est]) == 2 * est.inner_steps_per_estimate
    c = tiny.get_config()
    assert est.inner_steps_per_estimate == 2 * c.estimator.num_tasks * c.estimator.trunc_length  # PES: pairs


def test_log_writes_every_estimators_own_metrics_combined_over_groups(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import monitoring
    from outer.loop import _log

    step_metrics = {"group0/meta/loss": 1.0, "group1/meta/loss": 3.0, "group0/meta/dropped": 1.0,
                    "group1/meta/dropped": 0.0, "group0/bmg/matching": 2.0, "group1/bmg/matching": 4.0,
                    "group0/es/best_fitness": 0.5, "family/mlp/0/loss": 1.0, "group0/meta/grad_norm": 7.0,
                    "group1/meta/grad_norm": 5.0, "outer/grad_norm": 3.0, "outer/skipped": 1.0}
    later = step_metrics | {"group1/meta/dropped": 1.0, "group0/bmg/matching": 4.0}
    writer = monitoring.Writer(str(tmp_path))
    out = _log(writer, 2, [step_metrics, later], build.build(tiny.get_config()), {"perf/compile_s": 0.5})
    writer.close()
    assert out["meta/loss"] == 2.0 and out["bmg/matching"] == 3.5 and out["es/best_fitness"] == 0.5
    assert out["meta/dropped"] == 1.5  # a count: mean over the logged steps, summed over groups
    assert out["outer/skipped"] == 2.0  # skipped steps: the total since the last log
    assert out["meta/grad_norm"] == 6.0 and out["outer/grad_norm"] == 3.0  # both norms, apart
    assert not any(k.startswith("group") for k in out) and out["perf/compile_s"] == 0.5
    tags = EventAccumulator(str(tmp_path)).Reload().Tags()["scalars"]
    assert {"meta/dropped", "bmg/matching", "es/best_fitness", "family/mlp/0/loss", "perf/compile_s"} <= set(tags)


def test_release_compiled_code_empties_caches_only_under_pressure():
    """Long runs compile a program per task shape; over a share of the memory-map limit the caches go."""
    from outer import groups
    f = jax.jit(lambda x: x * 2.0)
    f(jnp.ones(3))
    assert f._cache_size() == 1
    maps = groups.memory_maps()
    if maps is None:
        pytest.skip("no /proc/self/maps here")
    assert 0 < maps[0] < maps[1]
    assert not groups.release_compiled_code(fraction=1.0) and f._cache_size() == 1
    assert groups.release_compiled_code(fraction=0.0) and f._cache_size() == 0
    np.testing.assert_array_equal(f(jnp.ones(3)), 2.0 * np.ones(3))  # and it compiles again


def test_groups_draw_their_own_lockstep_horizons_and_tell_the_optimizer():
    """groups.horizons: each redraw picks a horizon by weight; the group's truncation runs it in
    lockstep and its optimizer gets it as num_steps. Off, a run's fingerprint is unchanged."""
    c = tiny.get_config()
    c.estimator.update(lockstep=True, min_horizon=40, max_horizon=40)
    c.groups.update(num=2, resample_every=2)
    before = build.fingerprint(c)
    c.groups.update(horizons=(30, 60), horizon_weights=(1, 3))
    setup = build.build(c)
    assert build.fingerprint(c) != before
    groups = Groups(setup, jax.random.key(3), mesh=sharding.make_mesh(1))
    seen = []
    for g in range(2):
        for epoch in range(40):
            groups._build(g, epoch)
            est, h = groups.ests[g], groups.horizons[g]
            assert est.trunc.min_horizon == est.trunc.max_horizon == h and est.problem.num_steps == h
            seen.append(h)
    counts = collections.Counter(seen)
    assert set(counts) == {30, 60} and counts[60] > counts[30]  # weights 1:3 over 80 draws
    c.groups.update(horizons=(), horizon_weights=())
    assert build.fingerprint(c) == before and build.build(c).group_horizon(jax.random.key(0)) is None


def test_group_horizons_are_refused_where_they_cannot_apply():
    c = tiny.get_config()
    c.groups.horizons = (30, 60)
    with pytest.raises(ValueError, match="lockstep=True"):
        build.build(c)
    c.estimator.lockstep = True
    for bad, match in (((30, 0), "positive ints"), ((30, 60.5), "positive ints")):
        c.groups.horizons = bad
        with pytest.raises(ValueError, match=match):
            build.build(c)
    c.groups.update(horizons=(30, 60), horizon_weights=(1,))
    with pytest.raises(ValueError, match="2 positive numbers"):
        build.build(c)


def test_buckets_bound_the_compiled_programs_and_keep_drawing_fresh_data():
    """groups.buckets = K: every redraw has one of K (spec, horizon) shapes, so a jitted function of
    the estimator compiles at most K programs over many redraws, while each redraw's data settings
    (a tabular task's seed and generator) are new. Off, a run's fingerprint is unchanged."""
    import ml_collections

    from estimators import PerClassJit

    c = tiny.get_config()
    c.family = ml_collections.ConfigDict(dict(name="tabular", num_features=(4, 8, 16), num_classes=(2, 3),
                                              train_sizes=(128, 256), widths=(8, 16), width_weights=None,
                                              depths=(0, 1), depth_weights=None, batch_sizes=(16, 32),
                                              batch_size_weights=None))
    c.estimator.update(lockstep=True, min_horizon=40, max_horizon=40)
    c.groups.update(num=2, resample_every=2, horizons=(30, 60))
    before = build.fingerprint(c)
    c.groups.buckets = 3
    assert build.fingerprint(c) != before
    setup = build.build(c)
    groups = Groups(setup, jax.random.key(3), mesh=sharding.make_mesh(1))
    shapes = {(spec, h) for spec, h in groups.buckets}
    groups._build(0, 0)
    program = PerClassJit(lambda est, key: est.problem.task.init(key)).program(groups.ests[0])
    seeds = collections.defaultdict(set)
    for g in range(2):
        for epoch in range(12):
            groups._build(g, epoch)
            spec, h = groups.specs[g], groups.horizons[g]
            assert (spec, h) in shapes and groups.ests[g].trunc.max_horizon == h
            seeds[(spec, h)].add((spec.seed, spec.generator))
            program(groups.ests[g], jax.random.key(epoch))
    assert program._cache_size() <= len(shapes) <= 3
    assert len(seeds) >= 2 and max(len(s) for s in seeds.values()) >= 3  # the data is redrawn within a bucket
    c.groups.buckets = 0
    assert build.fingerprint(c) == before


@pytest.mark.parametrize("bad", [-1, 10_000])
def test_bad_buckets_are_refused_at_build(bad):
    c = tiny.get_config()
    c.groups.buckets = bad
    with pytest.raises(ValueError, match="config.groups.buckets must be an integer in"):
        build.build(c)
