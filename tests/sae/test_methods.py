"""Method values: the string shorthand and the value train identically; values are frozen and
hashable; bad settings raise ValueError naming the field; checkpoints by value resume exactly."""
import dataclasses
from typing import Any

import jax
import numpy as np
import pytest
from flax import nnx

from jsparse import sae
from jsparse.sae import methods

# (name, keyword shorthand, the value it stands for): every method, with settings that matter
CASES = [
    ("gba", dict(groups=3, update_every=3, gamma_plus=0.02), sae.GBA(groups=3, update_every=3, gamma_plus=0.02)),
    ("ba", dict(target=0.1, update_every=3, bias_init="quantile"),
     sae.BA(target=0.1, update_every=3, bias_init="quantile")),
    ("topk", dict(k=3, aux_k=4, tied=True), sae.TopK(k=3, aux_k=4, tied=True)),
    ("batchtopk", dict(k=3, threshold_rate=0.1), sae.BatchTopK(k=3, threshold_rate=0.1)),
    ("relu_l1", dict(l1=0.05, scale_init=0.5, output_scale=True), sae.ReLUL1(l1=0.05, scale_init=0.5,
                                                                              output_scale=True)),
    ("jumprelu", dict(l0=0.02, bandwidth=0.1), sae.JumpReLU(l0=0.02, bandwidth=0.1)),
]


@pytest.fixture(scope="module")
def small():
    return sae.make_stream(jax.random.PRNGKey(0), n=24, d=16, s=2, batch_size=64)


def _leaves(model):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(nnx.state(model))]


def test_method_list_is_the_library_one():
    assert sae.METHODS == ("gba", "ba", "topk", "batchtopk", "relu_l1", "jumprelu")
    assert {name for name, _, _ in CASES} == set(sae.METHODS)
    for name in sae.METHODS:
        assert methods.as_method(name) == methods.METHOD_TYPES[name]()
        assert methods.as_method(name).name == name


@pytest.mark.parametrize("name,options,value", CASES, ids=[c[0] for c in CASES])
def test_shorthand_and_value_train_identically(small, name, options, value):
    assert methods.as_method(name, **options) == value
    kw: dict[str, Any] = dict(width=24, steps=12, key=jax.random.PRNGKey(1), log_every=3, dead_steps=4,
                              show_progress=False)
    m1, h1 = sae.train(small, method=name, **options, **kw)
    m2, h2 = sae.train(small, method=value, **kw)
    for a, b in zip(_leaves(m1), _leaves(m2)):
        np.testing.assert_array_equal(a, b)
    for key in h1:
        np.testing.assert_array_equal(h1[key], h2[key])
    assert h1["finite"]


@pytest.mark.parametrize("value", [c[2] for c in CASES], ids=[c[0] for c in CASES])
def test_values_are_frozen_and_hashable(value):
    again = dataclasses.replace(value)
    assert again == value and hash(again) == hash(value)
    assert len({value, again}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.tied = not value.tied  # type: ignore[misc]
    assert isinstance(value, sae.Method)


def test_gba_targets_become_a_tuple_and_step_part_ignores_them():
    a = sae.GBA(targets=np.array([0.3, 0.1, 0.01]))  # type: ignore
    b = sae.GBA(targets=[0.2, 0.05, 0.02])
    assert a.targets == (0.3, 0.1, 0.01) and hash(a) != hash(b)
    assert a.step_part() == b.step_part()  # one compiled step for a sweep over targets
    assert a.num_groups == 3 and sae.BA().num_groups == 1


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: sae.GBA(groups=0), "groups"),
        (lambda: sae.GBA(htf=1.5), "htf"),
        (lambda: sae.GBA(htf="high"), "htf"),  # type: ignore
        (lambda: sae.GBA(ltf=0.9), "htf"),  # htf must exceed ltf
        (lambda: sae.GBA(targets=[0.1, 0.2]), "targets"),
        (lambda: sae.GBA(gamma_minus=-0.1), "gamma_minus"),
        (lambda: sae.GBA(update_every=2.5), "update_every"),  # type: ignore
        (lambda: sae.GBA(bias_init="median"), "bias_init"),
        (lambda: sae.GBA(gate="sigmoid"), "gate"),
        (lambda: sae.GBA(tied="yes"), "tied"),  # type: ignore
        (lambda: sae.BA(target=1.0), "target"),
        (lambda: sae.BA(eps=2.0), "eps"),
        (lambda: sae.TopK(k=0), "k"),
        (lambda: sae.TopK(k="32"), "k"),  # type: ignore
        (lambda: sae.TopK(aux_k=0), "aux_k"),
        (lambda: sae.TopK(aux_coef=-1.0), "aux_coef"),
        (lambda: sae.BatchTopK(threshold_rate=2.0), "threshold_rate"),
        (lambda: sae.ReLUL1(l1=-1.0), "l1"),
        (lambda: sae.ReLUL1(scale_init=float("nan")), "scale_init"),
        (lambda: sae.JumpReLU(l0=None), "l0"),  # type: ignore
        (lambda: sae.JumpReLU(bandwidth=0.0), "bandwidth"),
        (lambda: methods.as_method("gba", k=3), "k"),
        (lambda: methods.as_method(sae.TopK(), l1=0.1), "l1"),
        (lambda: methods.as_method("lasso"), "method"),
        (lambda: methods.as_method(object()), "method"),  # type: ignore
    ],
)
def test_bad_settings_raise_naming_the_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_width_checks_run_at_train(small):
    with pytest.raises(ValueError, match="k"):
        sae.train(small, method=sae.TopK(k=20), width=16, steps=2, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="groups"):
        sae.train(small, method=sae.GBA(groups=20), width=16, steps=2, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="checkpoint"):
        sae.train(small, width=16, steps=2, key=jax.random.PRNGKey(0), checkpoint="a", checkpoint_dir="b")


def test_value_overrides_and_string_options_meet():
    """Keyword options on a value replace its fields; None means "keep the default"."""
    assert methods.as_method(sae.TopK(k=4), aux_coef=0.0) == sae.TopK(k=4, aux_coef=0.0)
    assert methods.as_method("topk", k=None) == sae.TopK()
    ba = methods.as_method("ba", htf=0.1, ltf=1e-3)
    assert isinstance(ba, sae.BA) and ba.target == pytest.approx(0.01)  # sqrt(htf * ltf)


def test_checkpoint_value_resumes_bit_identically(small, tmp_path):
    method = sae.BatchTopK(k=3)
    kw: dict[str, Any] = dict(method=method, width=24, steps=20, key=jax.random.PRNGKey(3), log_every=2,
                              show_progress=False)
    full, h_full = sae.train(small.batch, **kw)

    def dies(i):
        if i == 13:
            raise RuntimeError("killed")
        return small.batch(i)

    with pytest.raises(RuntimeError, match="killed"):
        sae.train(dies, checkpoint=sae.Checkpoint(tmp_path, every=5), **kw)
    resumed, h_res = sae.train(small.batch, checkpoint=sae.Checkpoint(tmp_path, every=5), **kw)
    for a, b in zip(_leaves(full), _leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    for key in h_full:
        np.testing.assert_array_equal(h_full[key], h_res[key])
    with pytest.raises(ValueError, match="checkpoint_dir"):  # other settings: refused, not mixed
        sae.train(small.batch, checkpoint=tmp_path, **dict(kw, method=sae.BatchTopK(k=4)))
