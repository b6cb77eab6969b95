import numpy as np
import pytest

from study.methods import METHODS, fne_ternarise
from study.runner import Context
from study.spec import FinetuneConfig, RunSpec
from tests.conftest import TEST_RESOLUTION


@pytest.fixture(scope="module")
def context(cpu):
    return Context(cpu)


def _accuracy(context, spec):
    result = METHODS[spec.method](spec, context)
    return float(np.mean(result.predictions == context.images(spec).test_labels)), result


def test_pretrained_features_beat_random_init_features(context):
    """The point of transfer: ImageNet features classify real flowers far better than random-init features."""
    scores = {}
    for backbone in ("mobilenetv2_100", "mobilenetv2_100_random_init"):
        accs = [_accuracy(context, RunSpec("flowers5", backbone, "fe_linear", 20, seed, TEST_RESOLUTION))[0]
                for seed in (0, 1)]
        scores[backbone] = np.mean(accs)
    assert scores["mobilenetv2_100"] > scores["mobilenetv2_100_random_init"] + 0.15, scores


def test_fe_linear_records_cv_chosen_c_and_charges_its_share_of_extraction(context):
    spec = RunSpec("neu_steel_defects", "mobilenetv2_100", "fe_linear", 10, 0, TEST_RESOLUTION)
    accuracy, result = _accuracy(context, spec)
    assert accuracy > 0.5  # 6 classes: chance is 0.17
    assert result.hyperparams["C_selection"].endswith("CV") and result.hyperparams["C"] > 0
    features = context.features(spec)
    n_images = 60 + len(features.test_labels)
    assert result.images_processed == n_images
    assert np.isclose(result.seconds["extract"], features.extraction["seconds"] * n_images
                      / features.extraction["n_images"])
    assert result.energy_source == "estimated"


def test_one_image_per_class_falls_back_to_default_c(context):
    spec = RunSpec("flowers5", "mobilenetv2_100", "fe_linear", 1, 0, TEST_RESOLUTION)
    assert _accuracy(context, spec)[1].hyperparams["C"] == 1.0


def test_fne_is_ternary_with_training_statistics_only():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(50, 8)), rng.normal(loc=100.0, size=(20, 8))
    train_t, test_t = fne_ternarise(train, test)
    assert set(np.unique(train_t)) <= {-1.0, 0.0, 1.0}
    assert np.all(test_t == 1.0)  # test far above the training mean: standardised with train stats, not its own


def test_fe_fne_uses_every_stage_and_is_deterministic(context):
    spec = RunSpec("flowers5", "efficientnet_lite0", "fe_fne", 10, 0, TEST_RESOLUTION)
    first_accuracy, result = _accuracy(context, spec)
    assert result.hyperparams["dims"] == context.features(spec).fne_train.shape[1] > 1280
    assert first_accuracy > 0.5 and _accuracy(context, spec)[0] == first_accuracy


def test_finetuning_stores_every_trial_and_selects_on_validation(context):
    config = FinetuneConfig(learning_rates=(1e-4, 3e-3), batch_size=8, epochs=2, min_epochs=1, min_steps=6,
                            evaluations=3)
    spec = RunSpec("flowers5", "mobilenetv2_100", "ft_partial", 4, 0, TEST_RESOLUTION, config)
    result = METHODS["ft_partial"](spec, context)
    assert len(result.trials) == 2 and sum(t["selected"] for t in result.trials) == 1
    chosen = next(t for t in result.trials if t["selected"])
    assert chosen["val_accuracy"] == max(t["val_accuracy"] for t in result.trials)
    assert result.hyperparams["learning_rate"] == chosen["learning_rate"]
    assert result.n_train == 15 and result.n_val == 5  # 20% of each class's 4 images held out for validation
    assert np.array_equal(result.predictions, chosen["predictions"])
    assert result.seconds["fit"] > 0 and result.seconds["eval"] > 0
    assert result.recipe == config.recipe_id == result.hyperparams["recipe"]
    for trial in result.trials:  # the whole schedule, every check on the curve, the final check scores the trial
        assert trial["steps_planned"] == trial["steps_run"] == config.planned_steps(15) == 6
        assert [point["step"] for point in trial["curve"]] == [2, 4, 6]
        assert all(0 <= point["val_accuracy"] <= 1 and point["val_loss"] > 0 for point in trial["curve"])
        assert trial["val_accuracy"] == trial["curve"][-1]["val_accuracy"]


def test_one_image_per_class_chooses_the_trial_on_training_loss(context):
    config = FinetuneConfig(learning_rates=(1e-4, 3e-3), batch_size=8, epochs=1, min_epochs=1, min_steps=2,
                            evaluations=1)
    spec = RunSpec("neu_steel_defects", "mobilenetv2_100", "ft_full", 1, 0, TEST_RESOLUTION, config)
    result = METHODS["ft_full"](spec, context)
    assert result.n_val == 0 and "training loss" in result.hyperparams["selection"]
    chosen = next(t for t in result.trials if t["selected"])
    assert chosen["train_loss"] == min(t["train_loss"] for t in result.trials)


def test_recipe_budget_is_epochs_never_capped_by_steps():
    config = FinetuneConfig()
    assert config.planned_steps(8) == config.min_steps  # a tiny set still trains for min_steps
    for n_train in (100, 256, 800, 3000, 20000):
        epochs = config.planned_steps(n_train) * config.batch_size / n_train
        assert epochs >= config.epochs_for(n_train) >= config.min_epochs
    assert config.epochs_for(256) == config.epochs and config.epochs_for(1024) == config.epochs / 2
    doubled = FinetuneConfig(budget_scale=2.0)
    assert doubled.planned_steps(800) in (2 * config.planned_steps(800) - 1, 2 * config.planned_steps(800))
    assert doubled.recipe_id != config.recipe_id and len({FinetuneConfig().recipe_id, config.recipe_id}) == 1
