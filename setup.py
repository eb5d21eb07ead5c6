from glob import glob

from setuptools import find_packages, setup

PACKAGE = "jzi_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="GPS-denied localization by autoregressive zooming on an overhead map (ROS 2)",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/presets", glob("config/presets/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.pt") + glob("models/*.yaml") + ["models/README.md"]),
    ],
    # Exact pins live in requirements.txt; these ranges let `pip install -e .`
    # pull what is missing. colcon does not install them (rosdep + pip do).
    install_requires=[
        "setuptools",
        "numpy>=1.24",
        "pyyaml>=6",
        "pyproj>=3.6",
        "rasterio>=1.3.9",
        "opencv-python-headless>=4.8",
        "tqdm>=4.66",
        "matplotlib>=3.7",
        "rosbags>=0.10",
        "torch>=2.3",
        "timm>=1.0",
        "safetensors>=0.4",
    ],
    python_requires=">=3.10",
    zip_safe=True,
    maintainer="jzi_ros maintainers",
    maintainer_email="maintainers@jzi-ros.dev",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "jzi = jzi_ros.tools.cli:main",
            "localizer = jzi_ros.ros.entry:executable",
        ],
    },
)
