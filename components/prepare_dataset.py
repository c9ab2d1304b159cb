"""prepare_dataset: validate an ImageFolder and pin it as a manifest with reference statistics."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def prepare_dataset(data: dict, dataset: Output[Dataset]):
    """Validate every image and write manifest.json, reference.json and rejected.json.

    The manifest pins each file by content hash, so later steps read exactly what was
    validated; its fingerprint is the dataset's identity in the registry.

    Args:
        data: The experiment's `data` section (`DataConfig`: source, split fractions, the
            share of unusable files that fails the run).
        dataset: Output folder with the manifest, reference statistics and rejected files.
    """
    from slipway.config.experiment import DataConfig
    from slipway.steps import prepare

    info = prepare(DataConfig.model_validate(data), dataset.path)
    dataset.metadata.update(info)
