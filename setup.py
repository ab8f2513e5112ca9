"""acl_dist: adversarial image generators (the ACL family first) from one CPU core to multi-node clusters."""

from setuptools import find_packages, setup

with open("requirements.txt") as f:
    requirements = [line.split("#")[0].strip() for line in f if line.split("#")[0].strip()]
runtime = [r for r in requirements if not r.startswith(("pytest", "ruff"))]  # test tools are not dependencies

setup(
    name="acl_dist",
    version="0.1.0",
    description=__doc__,
    packages=find_packages(include=["acl_dist", "acl_dist.*"]),
    package_data={"acl_dist": ["eval/weights/*.pt"]},
    python_requires=">=3.10",
    install_requires=runtime,
    extras_require={"deepspeed": ["deepspeed==0.19.8"], "test": ["pytest==9.2.0", "ruff==0.17.6"]},
    entry_points={"console_scripts": ["acl-dist=acl_dist.cli:main"]},
)
