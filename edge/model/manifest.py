"""``bundle.yaml`` as types: the one definition the exporter and calibration write and the edge reads.

The manifest is the versioned contract between the training half and the edge half (see
:mod:`edge.model.bundle` for loading it with its files). Writing and reading through the same
pydantic models means a field cannot be spelt one way by ``edge-export`` and read another way by
the daemon, and ``edge-inspect schemas`` turns these models into the published JSON Schema.

Unknown keys are refused where the edge acts on the values (graph, input, outputs,
normalisation, thresholds, files, self-test, and the top level): a misspelt key there would
otherwise be silently ignored and the bundle run differently from what its author wrote. The
records of how the bundle was made (model, training, tools, export, thresholds.calibration)
accept extra keys, because the edge only keeps them for the record and the tools that write them
may add to them within a schema version. Field order is the order ``bundle.yaml`` is written in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from edge.model.formats import FORMATS, GraphFormat, Precision, check_format
from edge.model.preprocess import InputSpec

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
SHA256_PATTERN = r"^[0-9a-f]{64}$"
SAME_AS_IMAGE = "same_as_image"


class _Contract(BaseModel):
    """A section the edge acts on: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class _Record(BaseModel):
    """A record of how the bundle was made: kept as written, extra keys included."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class GaussiansInfo(_Record):
    """Size of PaDiM's per-position Gaussians."""

    cells: int | None = Field(None, ge=1, description="Grid cells, one Gaussian each.")
    features: int | None = Field(None, ge=1, description="Feature channels per cell (the random subset).")


class ModelInfo(_Record):
    """What the graph is: the model family, its backbone and the training configuration.

    A record only: the edge runs every family through the same graph contract and never acts on
    these fields (the family-specific ones are each written by one family and absent otherwise).
    """

    family: str = Field(description="Model family as the training registry (training.families.registry) names "
                        "it: patchcore, padim or autoencoder.")
    backbone: str = Field(description="Feature-extractor backbone, e.g. mobilenet_v2; for a family without one, "
                          "its network architecture (unet_lite).")
    config: dict[str, Any] = Field(default_factory=dict, description="The model configuration the graph was "
                                   "made from: the family's config class as data (training.patchcore."
                                   "PatchCoreConfig, training.families.padim.PadimConfig, training.families."
                                   "autoencoder.AutoencoderConfig).")
    memory_bank: list[int] | None = Field(None, description="patchcore: shape of the memory bank, [patches, "
                                          "feature size].")
    gaussians: GaussiansInfo | None = Field(None, description="padim: size of the per-position Gaussians.")
    parameters: int | None = Field(None, ge=0, description="autoencoder: trainable parameters of the network.")
    trainer: dict[str, Any] | None = Field(None, description="autoencoder: how the network was trained (optimiser, "
                                           "schedule, loss weights, perceptual backbone, augmentation, epochs run, "
                                           "best epoch and why training stopped).")


class GraphSpec(_Contract):
    """The graph file and how to call it."""

    file: str = Field(description="Graph file inside the bundle (.onnx, or the .xml of an OpenVINO IR).")
    format: GraphFormat = Field(description="Graph format; picks the default engine.")
    precision: Precision = Field(description="Numeric precision; format and precision must be a row of the "
                                 "formats table (edge.model.formats).")
    opset: int | None = Field(None, description="ONNX opset the graph was exported with.")
    input_name: str = Field("image", description="Name of the graph's image input.")
    weights: str | None = Field(None, description="Weights file of an OpenVINO IR (.bin); default: the graph "
                                "file with the format's weights suffix.")

    @model_validator(mode="after")
    def _known_pair_and_suffix(self) -> GraphSpec:
        check_format(self.format.value, self.precision.value)
        suffix = FORMATS[self.format].suffix
        if Path(self.file).suffix != suffix:
            raise ValueError(f"graph file {self.file!r} does not end in {suffix}, the suffix of format "
                             f"{self.format.value}")
        return self

    def files(self) -> list[str]:
        """The model files of this graph: the graph itself and, for an IR, its weights."""
        weights_suffix = FORMATS[self.format].weights_suffix
        if weights_suffix is None:
            return [self.file]
        return [self.file, self.weights or str(Path(self.file).with_suffix(weights_suffix))]


class AnomalyMapOutput(_Contract):
    """The graph output holding the anomaly map."""

    name: str = Field(description="Output name in the graph.")
    shape: tuple[Literal[1], Literal[1], PositiveInt, PositiveInt] | None = Field(
        None, description="[1, 1, height, width] of the map: the input size divided by one stride. Absent in "
        "bundles written before it was recorded: maps at input resolution.")
    meaning: str | None = Field(None, description="What the values are, for people reading the file.")


class ScoreOutput(_Contract):
    """The graph output holding the image score."""

    name: str = Field(description="Output name in the graph.")
    shape: list[PositiveInt] | None = Field(None, description="Shape of the score output, [1].")
    meaning: str | None = Field(None, description="What the value is, for people reading the file.")


class Outputs(_Contract):
    """The graph's two outputs."""

    anomaly_map: AnomalyMapOutput = Field(description="The anomaly map (raw score units).")
    score: ScoreOutput = Field(description="The image anomaly score (raw units).")


class Normalization(_Contract):
    """How a raw score becomes the 0..1 normalized_score of a verdict."""

    method: Literal["threshold_ratio"] = Field(description="threshold_ratio: clip(0.5 * score / thresholds.image, "
                                               "0, 1), so 0.5 is the decision boundary.")
    formula: str | None = Field(None, description="The method as a formula, for people reading the file.")
    meaning: str | None = Field(None, description="How to read the normalised score.")


class ScoreStats(_Record):
    """Summary of a set of scores."""

    min: float = Field(description="Smallest score.")
    max: float = Field(description="Largest score.")
    mean: float = Field(description="Mean score.")
    std: float = Field(description="Standard deviation of the scores.")


class CalibrationRecord(_Record):
    """Where the thresholds came from (written by edge-calibrate)."""

    created: str = Field(description="When calibration ran (ISO 8601, UTC).")
    good_source: str = Field(description="Folder of the held-out good images, or the recorded validation split.")
    n_good: int = Field(ge=0, description="Good images scored.")
    n_defects: int = Field(ge=0, description="Defect images scored (strategy f1).")
    excluded_training_images: int = Field(ge=0, description="Good images left out because the model was "
                                          "trained on them (matched by sha256).")
    skipped_unreadable: list[str] = Field(default_factory=list, description="Images that could not be read.")
    skipped_size: list[str] | None = Field(None, description="Images left out because their size differs "
                                           "wildly from the others' (a thumbnail, a stray crop).")
    allow_few: bool | None = Field(None, description="true: fewer good images than the strategy needs were "
                                   "accepted (edge-calibrate --allow-few).")
    good_scores: ScoreStats = Field(description="Statistics of the good images' scores.")
    false_reject_rate: float | None = Field(None, description="Fraction of these good images above the image "
                                            "threshold (NG): the false-reject rate the threshold implies.")
    escape_rate: float | None = Field(None, description="Fraction of the defect images at or below it (OK).")


class Thresholds(_Contract):
    """Decision thresholds in raw score units, as calibration wrote them; absent until calibrated."""

    image: float = Field(gt=0, allow_inf_nan=False, description="A frame scoring above it is NG.")
    pixel: float = Field(gt=0, allow_inf_nan=False, description="Map values above it form the NG regions.")
    strategy: str = Field(description="How the image threshold was chosen: quantile, mean_std, iqr, f1, or "
                          "manual (edge-calibrate --set-threshold).")
    pixel_strategy: str | None = Field(None, description="How the pixel threshold was chosen: same_as_image "
                                       "(then pixel equals image) or manual.")
    params: dict[str, Any] = Field(default_factory=dict, description="The strategy's parameters, e.g. "
                                   "target_false_reject_rate; for manual: who set it, when, the values before.")
    calibration: CalibrationRecord | None = Field(None, description="The record of the calibration run.")

    @model_validator(mode="after")
    def _pixel_as_recorded(self) -> Thresholds:
        """A pixel threshold other than the image one must say so, or an NG verdict can come with no region."""
        if self.pixel != self.image and self.pixel_strategy in (None, SAME_AS_IMAGE):
            raise ValueError(
                f"thresholds.pixel {self.pixel:g} differs from thresholds.image {self.image:g} but pixel_strategy is "
                f"{self.pixel_strategy or 'unset'}: change thresholds with `edge-calibrate BUNDLE --set-threshold "
                "VALUE [--pixel VALUE]`, not by editing bundle.yaml")
        return self


class TrainingResources(_Record):
    """What fitting the model cost, measured by edge-train around the fit (process-wide)."""

    wall_s: float | None = Field(None, ge=0, description="Wall-clock seconds of the fit.")
    cpu_s: float | None = Field(None, ge=0, description="CPU seconds of the fit, user + sys over all threads (on a "
                                "shared machine a steadier figure than wall time).")
    peak_rss_mb: float | None = Field(None, ge=0, description="Peak resident memory of the training process, MB.")
    load_avg_1m: dict[str, float] | None = Field(None, description="One-minute load average at the start and the "
                                                 "end of the fit: how busy the machine was.")


class TrainingRecord(_Record):
    """What the model was fitted on."""

    dataset: str | None = Field(None, description="Dataset folder of the training run.")
    n_train_images: int | None = Field(None, ge=0, description="Images in the memory bank's training set.")
    n_validation_images: int | None = Field(None, ge=0, description="Images held out as the validation split.")
    validation_images: list[str] | None = Field(None, description="Paths of the held-out split (the default "
                                                "good images of edge-calibrate).")
    train_manifest: str | None = Field(None, description="File in the bundle with the sha256 of every training "
                                       "image, so calibration can refuse them.")
    seed: int | None = Field(None, description="Random seed of the training run.")
    device: str | None = Field(None, description="Device the model was fitted on.")
    resources: TrainingResources | None = Field(None, description="What the fit cost on the machine it ran on.")
    preset: str | None = Field(None, description="The edge-train preset file the settings started from.")


class FileEntry(_Contract):
    """One model file of the bundle."""

    sha256: str = Field(pattern=SHA256_PATTERN, description="sha256 of the file, checked on load.")
    bytes: int | None = Field(None, ge=0, description="File size in bytes.")


class SelfTest(_Contract):
    """The load-time self-test probe (see edge.model.selftest)."""

    image: str = Field(description="Probe image inside the bundle.")
    score: float = Field(allow_inf_nan=False, description="Score the exported graph gave the probe at export.")
    tolerance: float = Field(ge=0, description="Allowed relative difference, see rule.")
    rule: str | None = Field(None, description="The pass rule, for people reading the file.")


class ParityRecord(_Record):
    """The export's parity check: torch against the exported graph on held-out images."""

    n_images: int = Field(ge=1, description="Images compared.")
    images: str = Field(description="Which images: the validation split, else training images.")
    max_abs_score_diff: float = Field(description="Largest |score_torch - score_graph|.")
    max_rel_score_diff: float = Field(description="Largest difference relative to max(1, |score_torch|).")
    max_abs_map_diff: float = Field(description="Largest per-pixel map difference.")
    tolerance: float = Field(description="Largest relative difference export accepted.")
    tolerance_rule: str = Field(description="The pass rule, for people reading the file.")


class CalibrationImages(_Record):
    """The INT8 calibration images (written by export, not edge-calibrate)."""

    source: str = Field(description="Folder the images came from, or the run's training images.")
    n_available: int = Field(ge=0, description="Images available there.")
    count: int = Field(ge=0, description="Images used.")
    sampling: str = Field(description="How they were chosen.")
    images: list[str] = Field(default_factory=list, description="Paths of the images used.")


class QuantizationRecord(_Record):
    """What INT8 quantisation did."""

    tool: str = Field(description="Quantisation tool and method.")
    scheme: str = Field(description="Activation and weight types, overflow handling.")
    fp32_ops: int = Field(ge=0, description="Graph nodes kept in FP32.")
    fp32_part: str = Field(description="Which part of the model stays FP32, and why.")


class DerivedRecord(_Record):
    """A graph derived from the parity-checked FP32 ONNX graph."""

    from_: str = Field(alias="from", description="What the graph was derived from.")
    seconds: float = Field(ge=0, description="Time the conversion or quantisation took.")


class GoodImagesRecord(_Record):
    """Held-out good images of an accuracy-guard run."""

    source: str = Field(description="Where the images came from.")
    count: int = Field(ge=0, description="Images compared.")


class MapCorrelation(_Record):
    """Spearman rank correlation of the anomaly maps over the good images."""

    mean: float = Field(description="Mean over the images.")
    min: float = Field(description="Smallest over the images.")


class LabelledGuardRecord(_Record):
    """The accuracy guard on labelled images (edge-export --val)."""

    source: str = Field(description="Labelled dataset folder.")
    n_images: int = Field(ge=0, description="Images scored.")
    n_defect: int = Field(ge=0, description="Defect images among them.")
    image_auroc_fp32: float = Field(description="Image AUROC of the FP32 reference graph.")
    image_auroc: float = Field(description="Image AUROC of this graph.")
    auroc_drop_points: float = Field(description="(FP32 AUROC - this AUROC) x 100.")


class AccuracyGuardRecord(_Record):
    """How the reduced-precision graph compared with the FP32 graph (see export.guard)."""

    reference: str = Field(description="The graph compared against.")
    candidate_backend: str = Field(description="Engine this graph ran on.")
    good_images: GoodImagesRecord = Field(description="The held-out good images.")
    score_rank_correlation_good: float = Field(description="Spearman correlation of the good images' scores.")
    median_rel_score_change_good: float = Field(description="Median |score - score_fp32| / score_fp32.")
    max_rel_score_change_good: float = Field(description="Largest |score - score_fp32| / score_fp32.")
    map_rank_correlation_good: MapCorrelation = Field(description="Rank correlation of the maps.")
    max_score_change: float = Field(description="Limit on the median relative change (without --val).")
    max_auroc_drop_points: float = Field(description="Limit on the AUROC drop (with --val).")
    labelled: LabelledGuardRecord | None = Field(None, description="Figures on labelled images, with --val.")
    passed: bool = Field(description="Whether the graph met the limits.")
    failures: list[str] = Field(default_factory=list, description="The limits it missed.")
    forced: bool = Field(False, description="Written despite a failure (edge-export --force).")


class ExportRecord(_Record):
    """How the bundle was exported."""

    seconds: float | None = Field(None, ge=0, description="Time the ONNX export took.")
    created: str | None = Field(None, description="When the bundle was exported (ISO 8601, UTC).")
    parity: ParityRecord | None = Field(None, description="The parity check against torch.")
    calibration: CalibrationImages | None = Field(None, description="INT8 calibration images.")
    quantization: QuantizationRecord | None = Field(None, description="INT8 quantisation; absent otherwise.")
    derived: DerivedRecord | None = Field(None, description="For graphs other than FP32 ONNX: their derivation.")
    accuracy_guard: AccuracyGuardRecord | None = Field(None, description="For reduced precisions: the guard.")


class BundleManifest(_Contract):
    """Everything the edge needs to run a bundle's graph correctly, and the record of how it was made."""

    schema_version: Literal[1] = Field(description="Version of this layout; the runtime refuses others.")
    bundle_id: str = Field(min_length=1, description="family-backbone-precision-<graph sha256 prefix>.")
    model: ModelInfo = Field(description="What the graph is.")
    graph: GraphSpec = Field(description="The graph file and how to call it.")
    input: InputSpec = Field(description="How pixels become the graph input (edge.model.preprocess).")
    outputs: Outputs = Field(description="The graph's outputs.")
    normalization: Normalization = Field(description="How scores are normalised to 0..1.")
    thresholds: Thresholds | None = Field(None, description="Decision thresholds; absent until edge-calibrate.")
    training: TrainingRecord | None = Field(None, description="What the model was fitted on.")
    tools: dict[str, str] | None = Field(None, description="Versions of the tools that made the bundle.")
    files: dict[str, FileEntry] = Field(min_length=1, description="Every model file of the bundle (plain names "
                                        "inside it) with its sha256.")
    export: ExportRecord | None = Field(None, description="How the bundle was exported.")
    selftest: SelfTest | None = Field(None, description="Load-time self-test probe; absent in bundles exported "
                                      "before it existed.")

    def to_yaml_data(self) -> dict[str, Any]:
        """The manifest as plain data for ``bundle.yaml``, in field order, unset optional parts left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
