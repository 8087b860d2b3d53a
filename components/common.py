"""What every vidpred component shares: the image it runs in and how it is declared.

Components run inside the project image (built from the repository's ``Dockerfile``, vidpred installed),
so nothing is pip-installed at run time (``install_kfp_package=False``, no ``packages_to_install``).
Under ``kfp.local`` (SubprocessRunner, ``use_venv=False``) the image is ignored and the task runs in this
virtualenv's interpreter.
"""

from __future__ import annotations

from kfp import dsl

DEFAULT_IMAGE = "vidpred:0.1.0"  # the tag `docker build -t vidpred:0.1.0 .` gives the project image


def vidpred_component(func=None, *, base_image: str = DEFAULT_IMAGE):
    """``@dsl.component`` for a function whose imports are all inside its body and live in ``vidpred``."""
    if func is None:
        return lambda f: vidpred_component(f, base_image=base_image)
    return dsl.component(func, base_image=base_image, install_kfp_package=False)


def with_image(component, base_image: str):
    """The same component for another image (the profile's ``pipeline.base_image``)."""
    return vidpred_component(component.python_func, base_image=base_image)
