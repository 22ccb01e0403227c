"""How an Estimator runs: where it keeps checkpoints, how often it writes them and its summaries."""
import numbers

from ..core.distribution import check_strategy

__all__ = ["RunConfig"]


def _optional_positive_int(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"RunConfig: expected `{name}` to be a positive integer or None; got {name}={value!r}.")
    return int(value)


class RunConfig:
    """Settings of an :class:`~flowlearn.estimators.Estimator` run, as ``tf.estimator.RunConfig``.

    Parameters
    ----------
    model_dir : str, optional
        Where checkpoints and event files go (the Estimator's own ``model_dir`` wins when both agree).
    tf_random_seed : int, optional
        Seeds the initial weights and the dropout masks of the Estimator, so that two Estimators with
        the same seed and data train identically.
    save_checkpoints_steps : int, optional
        Save a checkpoint every this many global steps. At most one of it and
        ``save_checkpoints_secs`` may be set; a checkpoint is always saved when ``train`` ends.
    save_checkpoints_secs : int, optional
        Save a checkpoint every this many seconds (default 600, as TensorFlow); None with
        ``save_checkpoints_steps`` None saves only at the end of ``train``.
    keep_checkpoint_max : int
        How many recent checkpoints ``model_dir`` keeps (older ones are deleted).
    save_summary_steps : int
        Write the loss, learning rate and global steps/second to TensorBoard every this many steps.
    log_step_count_steps : int
        Log the loss and steps/second (``logging``, logger ``flowlearn.estimators``) every this many steps.
    save_histogram_steps : int, optional
        Write a histogram of every trainable variable to TensorBoard every this many steps (flowlearn's
        addition; off by default, as Keras' ``histogram_freq=0``, since a histogram of a large kernel costs
        milliseconds). Needs ``save_summary_steps`` to be set.
    train_distribute : flowlearn.distributed.MPIStrategy, optional
        Train data-parallel over MPI ranks (``mpirun -np N python script.py``), as TensorFlow's
        ``train_distribute``: each rank's model_fn sees its slice of every batch of the input_fn (which
        must yield the same batches on every rank: seed its shuffling), ``minimize`` averages the
        gradients over the ranks, the logged loss is the global batch's and only rank 0 writes
        checkpoints and summaries. Evaluation and prediction run in full on each rank.

    >>> RunConfig(save_checkpoints_steps=100).save_checkpoints_secs is None
    True
    """

    def __init__(self, model_dir=None, tf_random_seed=None, save_checkpoints_steps=None, save_checkpoints_secs=600,
                 keep_checkpoint_max=5, save_summary_steps=100, log_step_count_steps=100, save_histogram_steps=None,
                 train_distribute=None):
        if model_dir is not None and not isinstance(model_dir, (str, bytes)) and not hasattr(model_dir, "__fspath__"):
            raise TypeError(f"RunConfig: expected `model_dir` to be a path or None; got {type(model_dir).__name__}.")
        if tf_random_seed is not None and (isinstance(tf_random_seed, bool) or not isinstance(
                tf_random_seed, numbers.Integral) or tf_random_seed < 0):
            raise ValueError(
                f"RunConfig: expected `tf_random_seed` to be a non-negative integer or None; got {tf_random_seed!r}."
            )
        if save_checkpoints_steps is not None and save_checkpoints_secs is not None:
            if save_checkpoints_secs == 600:  # TensorFlow's rule: giving steps replaces the default seconds
                save_checkpoints_secs = None
            else:
                raise ValueError(
                    "RunConfig: expected at most one of `save_checkpoints_steps` and `save_checkpoints_secs`; got "
                    f"save_checkpoints_steps={save_checkpoints_steps!r}, "
                    f"save_checkpoints_secs={save_checkpoints_secs!r}."
                )
        self.model_dir = None if model_dir is None else str(model_dir)
        self.tf_random_seed = None if tf_random_seed is None else int(tf_random_seed)
        self.save_checkpoints_steps = _optional_positive_int("save_checkpoints_steps", save_checkpoints_steps)
        self.save_checkpoints_secs = _optional_positive_int("save_checkpoints_secs", save_checkpoints_secs)
        self.keep_checkpoint_max = _optional_positive_int("keep_checkpoint_max", keep_checkpoint_max)
        self.save_summary_steps = _optional_positive_int("save_summary_steps", save_summary_steps)
        self.log_step_count_steps = _optional_positive_int("log_step_count_steps", log_step_count_steps)
        self.save_histogram_steps = _optional_positive_int("save_histogram_steps", save_histogram_steps)
        self.train_distribute = None if train_distribute is None else check_strategy(
            "RunConfig(train_distribute=...)", train_distribute)

    def replace(self, **changes):
        """A copy with some settings changed (as TensorFlow's ``RunConfig.replace``)."""
        settings = {name: getattr(self, name) for name in (
            "model_dir", "tf_random_seed", "save_checkpoints_steps", "save_checkpoints_secs", "keep_checkpoint_max",
            "save_summary_steps", "log_step_count_steps", "save_histogram_steps", "train_distribute")}
        unknown = sorted(set(changes) - set(settings))
        if unknown:
            raise ValueError(f"RunConfig.replace: unknown settings {unknown}; expected some of {sorted(settings)}.")
        if "save_checkpoints_steps" in changes and "save_checkpoints_secs" not in changes:
            settings["save_checkpoints_secs"] = None
        settings.update(changes)
        return RunConfig(**settings)

    def __repr__(self):
        return (f"RunConfig(model_dir={self.model_dir!r}, tf_random_seed={self.tf_random_seed}, "
                f"save_checkpoints_steps={self.save_checkpoints_steps}, "
                f"save_checkpoints_secs={self.save_checkpoints_secs}, keep_checkpoint_max={self.keep_checkpoint_max}, "
                f"save_summary_steps={self.save_summary_steps}, log_step_count_steps={self.log_step_count_steps}, "
                f"save_histogram_steps={self.save_histogram_steps}, train_distribute={self.train_distribute!r})")
