"""Demo: sample one Fashion-MNIST MLP (standard parametrization) and train it with Adam.

Command:  python meta_train.py --config configs/demo.py --workdir /tmp/lopt_demo
Cost on 2 CPU cores: about 10 s, most of it start-up and compilation.
Expected: the printed curve falls from ln(10) ≈ 2.3 to a validation loss of about 0.5 in 600 steps.
Until meta-training lands, this baseline run is the main job of `meta_train.py`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.family = ml_collections.ConfigDict(
        dict(
            name="mlp",
            widths=(64, 128, 256),
            depths=(1, 2),
            activations=("relu", "gelu"),
            batch_sizes=(128,),
            datasets=("fashion_mnist",),
            resolutions=(8,),
            parametrization="sp",
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(optimizer="adam", learning_rate=3e-3, num_steps=600, eval_every=50)
    )
    return c
