"""The old module paths still import and expose the same names: each top-level module that
moved into a subpackage is kept as an alias of its new home (or, where it was split, re-exports
the parts), so user code, `python -m resnetkit`, hubconf.py and the console script keep working.
"""

import importlib
import subprocess
import sys
import types

import pytest

import resnetkit as rk

# The public names each old module defined before the move (read from its source then).
OLD_NAMES = {
    "fileio": """
        SIDECAR_SUFFIX atomic_path atomic_write_text data_slug file_digest remove_verified
        sha256_file sidecar_path slug verified_path verify_file
    """,
    "cache": """
        CACHE_ENV cache_root
    """,
    "options": """
        ConfigError FieldType MAX_INT Option OptionField check check_fields coerce option
        option_fields
    """,
    "blocks": """
        BLOCK_TYPES BasicBlock Bottleneck FoldPairs PREACT_MODES PreActBasicBlock
        PreActBottleneck ShortcutA block_class conv1x1 conv3x3 make_block make_shortcut
        needs_projection preact_mode_for
    """,
    "spec": """
        BLOCKS ResNetSpec SHORTCUTS STEMS STRIDES SpecError StageSpec
    """,
    "pretrained_cfg": """
        IMAGENET_CROP_PCT IMAGENET_MEAN IMAGENET_STD INTERPOLATIONS PretrainedCfgError
        apply_normalisation check_cfg default_cfg fit_cfg make_cfg stats_for_channels
        trained_cfg
    """,
    "model": """
        ResNet
    """,
    "features": """
        FeatureInfo FeatureNet all_feature_info
    """,
    "summary": """
        LayerRow ModelSummary count_macs count_params format_si summary
    """,
    "registry": """
        CIFAR_STRIDES CIFAR_WIDTHS HE2015 HE2016 IMAGENET_STRIDES IMAGENET_WIDTHS ModelEntry
        UnknownModelError XIE2017 ZAGORUYKO2016 create_model get_entry get_spec list_models
        register resolve_spec
    """,
    "weights": """
        WeightsError classifier_keys load_weights read_metadata read_state_dict save_weights
        unpickling_reason
    """,
    "checkpoint": """
        CheckpointError LoadedModel MAX_IMAGE_SIDE STATE_FORMAT STATE_PATTERN as_loaded
        checkpoint_file copy_checkpoint list_states load_model_checkpoint load_state log
        newest_good_state non_finite_tensors preprocessing_from_metadata
        pretrained_cfg_from_metadata save_model_checkpoint save_state
    """,
    "pretrained": """
        BundledWeights CACHE_FORMAT DEFAULT_TAG IMAGENET_CLASSES InputNormalisation
        PretrainedError PretrainedWeights WEIGHT_SUFFIXES adapt_input_conv adapt_state_dict
        bundled_weights default_tag find_bundled first_conv_key freeze_backbone get_pretrained
        imagenet_class_names is_weights_file list_bundled list_pretrained load_pretrained
        load_pretrained_weights log pretrained_normalisation register_pretrained
        split_weights_name torch_hub_file weights_cache_dir weights_cfg weights_names
    """,
    "transforms": """
        EvalTransform create_transform
    """,
    "export": """
        EXPORT_FORMAT ExportError ExportReport FORMATS TORCHSCRIPT_METADATA check_output
        check_parity export_checkpoint export_metadata export_onnx export_torchscript fold_bn
        fold_pairs log read_export_metadata
    """,
    "predict": """
        BACKENDS OUTPUT_FORMATS OnnxModel PredictError Prediction format_predictions input_side
        load_onnx_model load_predictor load_pretrained_model predict_images
    """,
    "inference": """
        InferenceError InferenceModel METHODS PARITY_TOLERANCE compiler_available log
        optimize_for_inference
    """,
    "config": """
        DataConfig EvalConfig MAX_IMAGE_SIZE MAX_SEED MILESTONE_UNITS OPTIMIZERS OptimConfig
        PRECISIONS RUN_FOLDER_DEFAULTS RunConfig RuntimeConfig SECTIONS TrainConfig
        check_run_name config_options
    """,
    "schedule": """
        SCHEDULES Schedule epochs_to_steps lr_at
    """,
    "runtime": """
        BF16_MARGIN CACHE_FORMAT CpuInfo NATIVE_BF16_FLAGS PRECISIONS PrecisionDecision
        PrecisionProbe Probe autocast available_cores choose_precision describe_cpu
        doctor_report format_doctor log machine_key matmul_gflops measure_precision native_bf16
        probe_cache_path probe_for read_cached_probe resolve_precision write_cached_probe
    """,
    "distributed": """
        DistInfo all_reduce_sum barrier device_for from_environment init shutdown
        threads_per_process
    """,
    "ema": """
        WeightEma
    """,
    "progress": """
        Progress format_duration in_notebook is_interactive
    """,
    "report": """
        plot_confusion plot_curves write_run_report
    """,
    "rundir": """
        LOCK MARKER MARKER_VERSION RunError RunLock check_replaceable clean_stale_temp_files
        has_marker lock_holder log remove_run_dir resumable write_marker
    """,
    "evaluate": """
        CheckpointEvaluation EvalResult Mistake autocast_for evaluate evaluate_checkpoint
        keep_confident_mistakes tta_views
    """,
    "train": """
        Data LENGTH_FREE_SCHEDULES METRIC_FIELDS MetricsLog NonFiniteLossError REPORT_MISTAKES
        RESUME_SAFE RUNTIME_RECORD TrainResult VAL_FIELDS available_cores best_row build_model
        build_optimizer build_schedule check_finite_weights check_run_dir configure_threads
        decide_precision default_run_name evaluate_held_out finite_everywhere fit load_data log
        metric_fields param_groups prepare_run_dir read_runtime_record resolve_device
        resume_config selection_note split_columns train wrap_distributed write_runtime_record
    """,
    "cli": """
        OUT_OF_MEMORY PRETRAINED_HELP SECTION_TITLES USER_ERRORS add_config_flags build_parser
        checkpoint_and_images checkpoint_or_pretrained cmd_doctor cmd_eval cmd_experiment
        cmd_explain cmd_export cmd_inspect cmd_inspect_features cmd_models cmd_predict
        cmd_summary cmd_train log main predict_output_format print_pretrained refuse_existing
        train_config_from_args train_flag_changes train_summary write_confusion_png
        write_eval_page
    """,
}
# Old path -> new home, for the modules that moved whole: the old path is the same module
# object, so patching an attribute through either name patches the code that uses it.
MOVED = {
    old: new
    for old, new in (
        line.split()
        for line in """
    fileio core.fileio
    cache core.cache
    options core.options
    blocks models.blocks
    spec models.spec
    pretrained_cfg models.pretrained_cfg
    model models.resnet
    features models.features
    summary models.summary
    checkpoint weights.checkpoint
    pretrained weights.pretrained
    transforms weights.transforms
    export deploy.export
    predict deploy.predict
    inference deploy.inference
    config training.config
    schedule training.schedule
    runtime training.runtime
    distributed training.distributed
    ema training.ema
    progress training.progress
    report training.report
    rundir training.rundir
    evaluate training.evaluate
    train training.train
""".strip().splitlines()
    )
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_an_old_module_path_exposes_every_name_it_had(old):
    module = importlib.import_module(f"resnetkit.{old}")
    missing = [name for name in OLD_NAMES[old].split() if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_module_is_the_same_module_under_its_old_path(old):
    new = importlib.import_module(f"resnetkit.{MOVED[old]}")
    assert importlib.import_module(f"resnetkit.{old}") is new
    assert sys.modules[f"resnetkit.{old}"] is new


def test_the_split_registry_keeps_create_model_and_list_models_with_weights():
    from resnetkit.registry import create_model, list_models

    assert create_model is rk.create_model and list_models is rk.list_models
    assert "resnet20.fashion_mnist" in list_models("resnet20", pretrained=True)


def test_summary_stays_the_function_after_its_old_module_path_is_imported():
    import resnetkit.summary

    assert resnetkit.summary is rk.summary
    assert isinstance(rk.summary, types.FunctionType)
    assert sys.modules["resnetkit.summary"] is importlib.import_module("resnetkit.models.summary")


def test_python_dash_m_resnetkit_and_resnetkit_cli_run_the_command():
    for module in ("resnetkit", "resnetkit.cli"):
        done = subprocess.run(
            [sys.executable, "-m", module, "models", "resnet20"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "resnet20" in done.stdout
