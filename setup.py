"""Ship the Space app inside the wheel: the package metadata is in pyproject.toml, this only adds a build step.

`space/` (the Gradio app) sits at the top of the repository, beside `lib/`; setuptools packs only files inside
the package. Copying it to `distrinews/space/` at build time lets an installed wheel (the Kaggle dataset,
`pip install git+...`) stage and serve the app as a checkout does.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SPACE_FILES = ("app.py", "README.md", "requirements.txt", "requirements-cpu.txt")


class BuildPyWithSpace(build_py):
    def run(self):
        super().run()
        source = Path(__file__).resolve().parent / "space"
        target = Path(self.build_lib) / "distrinews" / "space"
        target.mkdir(parents=True, exist_ok=True)
        for name in SPACE_FILES:
            shutil.copy2(source / name, target / name)
        shutil.copy2(source.parent / "LICENSE", target / "LICENSE")  # `publish space` ships it with the Space


setup(cmdclass={"build_py": BuildPyWithSpace})
