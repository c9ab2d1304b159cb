"""prepare_dataset: validate an ImageFolder and pin it as a manifest with reference statistics."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def prepare_dataset(
    source_uri: str,
    dataset: Output[Dataset],
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_rejected_fraction: float = 0.1,
):
    """Validate every image and write manifest.json, reference.json and rejected.json.

    The manifest pins each file by content hash, so later steps read exactly what was
    validated; its fingerprint is the dataset's identity in the registry.

    Args:
        source_uri: ImageFolder (ROOT/<class>/<image>) as a local or PVC path, or an fsspec
            URI such as s3://bucket/prefix or gs://bucket/prefix.
        dataset: Output folder with the manifest, reference statistics and rejected files.
        val_fraction: Share of images in the validation split (stable hash of the path).
        test_fraction: Share of images in the test split.
        max_rejected_fraction: Fail when more than this share of files cannot be used.
    """
    from slipway.steps import prepare

    info = prepare(source_uri, dataset.path, val_fraction, test_fraction, max_rejected_fraction)
    dataset.metadata.update(info)
