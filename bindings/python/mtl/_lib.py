"""Loading libmtl and declaring its C functions for ctypes.

Every public C function appears exactly once in :data:`DECLARATIONS` (name -> return type,
argument types, version it appeared in). Functions returning ``mtl_status`` get an
``errcheck`` that raises the matching :mod:`mtl.errors` exception carrying
``mtl_last_error()``. Adding a header's functions means adding rows here (and a test in
tests/python/test_declarations.py compares this table with include/mtl/*.h).

The library is found, in order, at:

1. the path in the ``MTL_LIBRARY`` environment variable (if set, it must load);
2. ``libmtl.so.1`` / ``libmtl.so`` inside this package's folder;
3. the system: ``ctypes.util.find_library("mtl")``, then the plain soname ``libmtl.so.1``.

At import the library's major version must equal :data:`mtl._version.EXPECTED_MAJOR`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from ctypes import POINTER, c_char_p, c_double, c_float, c_int, c_int64, c_size_t, c_uint64, c_void_p

from . import errors
from ._version import EXPECTED_MAJOR

__all__ = ["C", "DECLARATIONS", "STATUS", "CHECKED_PTR", "PROGRESS_FN", "CALLBACK_TYPES",
           "library_path", "load_library"]

# Markers for return types that need checking.
STATUS = "mtl_status"      # c_int; non-zero raises
CHECKED_PTR = "checked_ptr"  # c_void_p; NULL raises with the last error

HANDLE = c_void_p               # T *  (an opaque handle, borrowed or owned)
HANDLE_OUT = POINTER(c_void_p)  # T ** (an output handle, or an array of handles)
I64_P = POINTER(c_int64)
INT_P = POINTER(c_int)
FLOAT_P = POINTER(c_float)
DOUBLE_P = POINTER(c_double)
SIZE_P = POINTER(c_size_t)
STR = c_char_p
STR_OUT = POINTER(c_char_p)

#: Function-pointer typedefs of the public headers (name -> ctypes prototype); a test
#: compares them with the typedefs.
#: int (*mtl_progress_fn)(void *user, const char *event, int64_t epoch, int64_t step,
#:                        const double *values, int nvalues)
PROGRESS_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_char_p, c_int64, c_int64, DOUBLE_P, c_int)
CALLBACK_TYPES = {"mtl_progress_fn": PROGRESS_FN}

#: name -> (restype, argtypes, since). ``since`` is "MAJOR.MINOR" of the library release
#: the function appeared in; a missing symbol of a newer release than the loaded library is
#: bound to a stub raising UnsupportedError, a missing older one is an ImportError.
DECLARATIONS: dict[str, tuple] = {
    # ---- version.h ----
    "mtl_version": (c_int, [], "1.0"),
    "mtl_version_string": (STR, [], "1.0"),
    # ---- status.h ----
    "mtl_status_string": (STR, [c_int], "1.0"),
    "mtl_last_error": (STR, [], "1.0"),
    "mtl_last_status": (c_int, [], "1.0"),
    "mtl_clear_error": (None, [], "1.0"),
    # ---- runtime.h ----
    "mtl_set_num_threads": (STATUS, [c_int], "1.0"),
    "mtl_get_num_threads": (c_int, [], "1.0"),
    "mtl_build_info": (STR, [], "1.0"),
    "mtl_blas_kernels": (STR, [], "1.0"),
    # ---- tensor.h ----
    "mtl_tensor_create": (STATUS, [HANDLE_OUT, c_int, c_int, I64_P], "1.0"),
    "mtl_tensor_wrap": (STATUS, [HANDLE_OUT, c_int, c_void_p, c_int, I64_P], "1.0"),
    "mtl_tensor_clone": (STATUS, [HANDLE_OUT, HANDLE], "1.0"),
    "mtl_tensor_copy": (STATUS, [HANDLE, HANDLE], "1.0"),
    "mtl_tensor_fill": (STATUS, [HANDLE, c_double], "1.0"),
    "mtl_tensor_reshape": (STATUS, [HANDLE, c_int, I64_P], "1.0"),
    "mtl_tensor_free": (None, [HANDLE], "1.0"),
    "mtl_tensor_ndim": (c_int, [HANDLE], "1.0"),
    "mtl_tensor_dim": (c_int64, [HANDLE, c_int], "1.0"),
    "mtl_tensor_shape": (STATUS, [HANDLE, I64_P, c_int], "1.0"),
    "mtl_tensor_dtype": (c_int, [HANDLE], "1.0"),
    "mtl_tensor_numel": (c_int64, [HANDLE], "1.0"),
    "mtl_tensor_nbytes": (c_size_t, [HANDLE], "1.0"),
    "mtl_tensor_data": (c_void_p, [HANDLE], "1.0"),
    "mtl_tensor_data_const": (c_void_p, [HANDLE], "1.0"),
    "mtl_tensor_is_owned": (c_int, [HANDLE], "1.0"),
    # ---- model.h ----
    "mtl_model_create": (STATUS, [HANDLE_OUT, c_int, c_int, I64_P], "1.0"),
    "mtl_model_free": (None, [HANDLE], "1.0"),
    "mtl_model_trunk": (CHECKED_PTR, [HANDLE], "1.0"),
    "mtl_model_add_head": (STATUS, [HANDLE, HANDLE_OUT, STR], "1.0"),
    "mtl_model_num_heads": (c_int, [HANDLE], "1.0"),
    "mtl_model_head_at": (CHECKED_PTR, [HANDLE, c_int], "1.0"),
    "mtl_model_head": (CHECKED_PTR, [HANDLE, STR], "1.0"),
    "mtl_model_head_index": (STATUS, [HANDLE, STR, INT_P], "1.0"),
    "mtl_trunk_add_layer": (STATUS, [HANDLE, STR, INT_P], "1.0"),
    "mtl_trunk_set_int": (STATUS, [HANDLE, c_int, STR, c_int64], "1.0"),
    "mtl_trunk_set_double": (STATUS, [HANDLE, c_int, STR, c_double], "1.0"),
    "mtl_trunk_set_string": (STATUS, [HANDLE, c_int, STR, STR], "1.0"),
    "mtl_trunk_num_layers": (c_int, [HANDLE], "1.0"),
    "mtl_trunk_add_linear": (STATUS, [HANDLE, c_int64], "1.0"),
    "mtl_trunk_output_size": (c_int64, [HANDLE], "1.0"),
    "mtl_head_add_layer": (STATUS, [HANDLE, STR, INT_P], "1.0"),
    "mtl_head_set_int": (STATUS, [HANDLE, c_int, STR, c_int64], "1.0"),
    "mtl_head_set_double": (STATUS, [HANDLE, c_int, STR, c_double], "1.0"),
    "mtl_head_set_string": (STATUS, [HANDLE, c_int, STR, STR], "1.0"),
    "mtl_head_num_layers": (c_int, [HANDLE], "1.0"),
    "mtl_head_add_linear": (STATUS, [HANDLE, c_int64], "1.0"),
    "mtl_head_set_loss": (STATUS, [HANDLE, STR], "1.0"),
    "mtl_head_set_loss_double": (STATUS, [HANDLE, STR, c_double], "1.0"),
    "mtl_head_set_class_weights": (STATUS, [HANDLE, FLOAT_P, c_int64], "1.0"),
    "mtl_head_name": (STR, [HANDLE], "1.0"),
    "mtl_head_loss": (STR, [HANDLE], "1.0"),
    "mtl_head_output_size": (c_int64, [HANDLE], "1.0"),
    "mtl_model_set_double": (STATUS, [HANDLE, STR, c_double], "1.0"),
    "mtl_model_get_double": (STATUS, [HANDLE, STR, DOUBLE_P], "1.0"),
    "mtl_model_build": (STATUS, [HANDLE, c_int64, c_uint64], "1.0"),
    "mtl_model_is_built": (c_int, [HANDLE], "1.0"),
    "mtl_model_max_batch": (c_int64, [HANDLE], "1.0"),
    "mtl_model_num_params": (c_int64, [HANDLE], "1.0"),
    "mtl_model_num_shared_params": (c_int64, [HANDLE], "1.0"),
    "mtl_model_param_count": (c_int, [HANDLE], "1.0"),
    "mtl_model_param_name": (STR, [HANDLE, c_int], "1.0"),
    "mtl_model_param_shape": (STATUS, [HANDLE, STR, I64_P, c_int, INT_P], "1.0"),
    "mtl_model_get_param": (STATUS, [HANDLE, STR, HANDLE], "1.0"),
    "mtl_model_set_param": (STATUS, [HANDLE, STR, HANDLE], "1.0"),
    "mtl_model_get_grad": (STATUS, [HANDLE, STR, HANDLE], "1.0"),
    "mtl_model_train_step": (
        STATUS, [HANDLE, HANDLE, HANDLE, HANDLE, HANDLE_OUT, HANDLE_OUT, FLOAT_P], "1.0"),
    "mtl_model_forward_backward": (
        STATUS, [HANDLE, HANDLE, HANDLE, HANDLE_OUT, HANDLE_OUT, FLOAT_P], "1.0"),
    "mtl_model_train_step_multi": (
        STATUS, [HANDLE, HANDLE, HANDLE, HANDLE_OUT, HANDLE_OUT, HANDLE_OUT, FLOAT_P], "1.0"),
    "mtl_model_forward_backward_multi": (
        STATUS, [HANDLE, HANDLE, HANDLE_OUT, HANDLE_OUT, HANDLE_OUT, FLOAT_P], "1.0"),
    "mtl_model_compute_losses": (STATUS, [HANDLE, HANDLE, HANDLE_OUT, HANDLE_OUT, FLOAT_P], "1.0"),
    "mtl_model_predict": (STATUS, [HANDLE, HANDLE], "1.0"),
    "mtl_model_output": (STATUS, [HANDLE, c_int, HANDLE, c_int], "1.0"),
    "mtl_model_output_batch": (c_int64, [HANDLE], "1.0"),
    "mtl_model_reseed": (STATUS, [HANDLE, c_uint64], "1.0"),
    # ---- optim.h ----
    "mtl_optimizer_create": (STATUS, [HANDLE_OUT, HANDLE, STR], "1.0"),
    "mtl_optimizer_free": (None, [HANDLE], "1.0"),
    "mtl_optimizer_set_double": (STATUS, [HANDLE, STR, c_double], "1.0"),
    "mtl_optimizer_set_int": (STATUS, [HANDLE, STR, c_int64], "1.0"),
    "mtl_optimizer_set_string": (STATUS, [HANDLE, STR, STR], "1.0"),
    "mtl_optimizer_get_double": (STATUS, [HANDLE, STR, DOUBLE_P], "1.0"),
    "mtl_optimizer_key_name": (STR, [HANDLE, c_int], "1.0"),
    "mtl_optimizer_key_default": (STATUS, [HANDLE, STR, DOUBLE_P], "1.0"),
    "mtl_optimizer_set_lr_scale": (STATUS, [HANDLE, STR, c_double], "1.0"),
    "mtl_optimizer_kind": (STR, [HANDLE], "1.0"),
    "mtl_optimizer_current_lr": (c_double, [HANDLE], "1.0"),
    "mtl_optimizer_step_count": (c_int64, [HANDLE], "1.0"),
    "mtl_optimizer_step": (STATUS, [HANDLE], "1.0"),
    "mtl_optimizer_reset": (STATUS, [HANDLE], "1.0"),
    # ---- weighting.h ----
    "mtl_weighting_create": (STATUS, [HANDLE_OUT, STR, c_int], "1.0"),
    "mtl_weighting_free": (None, [HANDLE], "1.0"),
    "mtl_weighting_set_double": (STATUS, [HANDLE, STR, c_double], "1.0"),
    "mtl_weighting_set_int": (STATUS, [HANDLE, STR, c_int64], "1.0"),
    "mtl_weighting_set_string": (STATUS, [HANDLE, STR, STR], "1.0"),
    "mtl_weighting_key_name": (STR, [HANDLE, c_int], "1.0"),
    "mtl_weighting_set_weights": (STATUS, [HANDLE, DOUBLE_P, c_int], "1.0"),
    "mtl_weighting_get_weights": (STATUS, [HANDLE, DOUBLE_P, c_int], "1.0"),
    "mtl_weighting_method": (STR, [HANDLE], "1.0"),
    "mtl_weighting_num_tasks": (c_int, [HANDLE], "1.0"),
    "mtl_weighting_get_double": (STATUS, [HANDLE, STR, DOUBLE_P], "1.0"),
    "mtl_weighting_get_int": (STATUS, [HANDLE, STR, I64_P], "1.0"),
    "mtl_weighting_get_string": (STATUS, [HANDLE, STR, STR_OUT], "1.0"),
    "mtl_weighting_available": (STR, [c_int], "1.0"),
    "mtl_weighting_reset": (STATUS, [HANDLE], "1.0"),
    # ---- data.h ----
    "mtl_npy_load": (STATUS, [HANDLE_OUT, STR], "1.0"),
    "mtl_npy_save": (STATUS, [HANDLE, STR], "1.0"),
    "mtl_csv_options_create": (STATUS, [HANDLE_OUT], "1.0"),
    "mtl_csv_options_free": (None, [HANDLE], "1.0"),
    "mtl_csv_options_set_int": (STATUS, [HANDLE, STR, c_int64], "1.0"),
    "mtl_csv_options_set_string": (STATUS, [HANDLE, STR, STR], "1.0"),
    "mtl_csv_read": (STATUS, [HANDLE_OUT, STR, HANDLE], "1.0"),
    "mtl_csv_free": (None, [HANDLE], "1.0"),
    "mtl_csv_num_rows": (c_int64, [HANDLE], "1.0"),
    "mtl_csv_num_cols": (c_int, [HANDLE], "1.0"),
    "mtl_csv_col_name": (STR, [HANDLE, c_int], "1.0"),
    "mtl_csv_col_index": (STATUS, [INT_P, HANDLE, STR], "1.0"),
    "mtl_csv_col_is_numeric": (c_int, [HANDLE, c_int], "1.0"),
    "mtl_csv_field": (STR, [HANDLE, c_int64, c_int], "1.0"),
    "mtl_csv_numeric": (STATUS, [HANDLE_OUT, HANDLE, INT_P, c_int, c_int], "1.0"),
    "mtl_encoder_create": (STATUS, [HANDLE_OUT], "1.0"),
    "mtl_encoder_free": (None, [HANDLE], "1.0"),
    "mtl_encoder_add_numeric": (STATUS, [HANDLE, HANDLE, STR, c_int], "1.0"),
    "mtl_encoder_add_onehot": (STATUS, [HANDLE, HANDLE, STR], "1.0"),
    "mtl_encoder_add_ids": (STATUS, [HANDLE, HANDLE, STR], "1.0"),
    "mtl_encoder_add_label": (STATUS, [HANDLE, HANDLE, STR], "1.0"),
    "mtl_encoder_num_features": (c_int, [HANDLE], "1.0"),
    "mtl_encoder_num_labels": (c_int, [HANDLE], "1.0"),
    "mtl_encoder_num_id_columns": (c_int, [HANDLE], "1.0"),
    "mtl_encoder_num_classes": (c_int, [HANDLE, c_int], "1.0"),
    "mtl_encoder_class_name": (STR, [HANDLE, c_int, c_int], "1.0"),
    "mtl_encoder_num_ids": (c_int, [HANDLE, c_int], "1.0"),
    "mtl_encoder_transform": (STATUS, [HANDLE_OUT, HANDLE, HANDLE], "1.0"),
    "mtl_encoder_transform_label": (STATUS, [HANDLE_OUT, HANDLE, HANDLE, c_int], "1.0"),
    "mtl_encoder_transform_ids": (STATUS, [HANDLE_OUT, HANDLE, HANDLE, c_int], "1.0"),
    "mtl_encoder_save": (STATUS, [HANDLE, STR], "1.0"),
    "mtl_encoder_load": (STATUS, [HANDLE_OUT, STR], "1.0"),
    # ---- metrics.h ----
    "mtl_metric_accuracy": (STATUS, [DOUBLE_P, HANDLE, HANDLE], "1.0"),
    "mtl_metric_precision": (STATUS, [DOUBLE_P, HANDLE, HANDLE, STR], "1.0"),
    "mtl_metric_recall": (STATUS, [DOUBLE_P, HANDLE, HANDLE, STR], "1.0"),
    "mtl_metric_f1": (STATUS, [DOUBLE_P, HANDLE, HANDLE, STR], "1.0"),
    "mtl_metric_per_class": (
        STATUS, [DOUBLE_P, DOUBLE_P, DOUBLE_P, I64_P, c_int, HANDLE, HANDLE], "1.0"),
    "mtl_metric_confusion": (STATUS, [I64_P, c_int, HANDLE, HANDLE], "1.0"),
    "mtl_metric_roc_auc": (STATUS, [DOUBLE_P, HANDLE, HANDLE], "1.0"),
    "mtl_metric_mse": (STATUS, [DOUBLE_P, HANDLE, HANDLE], "1.0"),
    "mtl_metric_mae": (STATUS, [DOUBLE_P, HANDLE, HANDLE], "1.0"),
    "mtl_metric_r2": (STATUS, [DOUBLE_P, HANDLE, HANDLE], "1.0"),
    "mtl_metric_delta_m": (STATUS, [DOUBLE_P, DOUBLE_P, DOUBLE_P, INT_P, c_int], "1.0"),
    "mtl_metric_entity_f1": (STATUS, [DOUBLE_P, HANDLE, HANDLE, POINTER(c_char_p), c_int], "1.0"),
    "mtl_metric_compute": (STATUS, [DOUBLE_P, STR, HANDLE, HANDLE], "1.0"),
    "mtl_metric_lower_is_better": (c_int, [STR], "1.0"),
    "mtl_metric_name": (STR, [c_int], "1.0"),
    # ---- dataset.h ----
    "mtl_dataset_create": (STATUS, [HANDLE_OUT, HANDLE, c_int], "1.0"),
    "mtl_dataset_adopt": (STATUS, [HANDLE_OUT, HANDLE, c_int], "1.0"),
    "mtl_dataset_create_npy": (STATUS, [HANDLE_OUT, STR, c_int], "1.0"),
    "mtl_dataset_create_csv": (STATUS, [HANDLE_OUT, HANDLE, HANDLE, c_int], "1.0"),
    "mtl_dataset_free": (None, [HANDLE], "1.0"),
    "mtl_dataset_set_target": (STATUS, [HANDLE, c_int, HANDLE], "1.0"),
    "mtl_dataset_set_mask": (STATUS, [HANDLE, c_int, HANDLE], "1.0"),
    "mtl_dataset_adopt_target": (STATUS, [HANDLE, c_int, HANDLE], "1.0"),
    "mtl_dataset_adopt_mask": (STATUS, [HANDLE, c_int, HANDLE], "1.0"),
    "mtl_dataset_load_target_npy": (STATUS, [HANDLE, c_int, STR], "1.0"),
    "mtl_dataset_load_mask_npy": (STATUS, [HANDLE, c_int, STR], "1.0"),
    "mtl_dataset_set_target_label": (
        STATUS, [HANDLE, c_int, HANDLE, HANDLE, c_int, c_int], "1.0"),
    "mtl_dataset_set_target_numeric": (STATUS, [HANDLE, c_int, HANDLE, STR_OUT, c_int], "1.0"),
    "mtl_dataset_size": (c_int64, [HANDLE], "1.0"),
    "mtl_dataset_num_tasks": (c_int, [HANDLE], "1.0"),
    "mtl_dataset_has_target": (c_int, [HANDLE, c_int], "1.0"),
    "mtl_dataset_inputs": (HANDLE, [HANDLE], "1.0"),
    "mtl_dataset_target": (HANDLE, [HANDLE, c_int], "1.0"),
    "mtl_dataset_mask": (HANDLE, [HANDLE, c_int], "1.0"),
    "mtl_dataset_index": (c_int64, [HANDLE, c_int64], "1.0"),
    "mtl_dataset_split": (
        STATUS, [HANDLE, HANDLE_OUT, HANDLE_OUT, HANDLE_OUT, c_double, c_double, c_uint64],
        "1.0"),
    "mtl_dataset_subset": (STATUS, [HANDLE_OUT, HANDLE, I64_P, c_int64], "1.0"),
    "mtl_dataset_gather": (
        STATUS, [HANDLE, I64_P, c_int64, HANDLE, HANDLE_OUT, HANDLE_OUT], "1.0"),
    "mtl_loader_create": (STATUS, [HANDLE_OUT, HANDLE, c_int64, c_int, c_uint64, c_int], "1.0"),
    "mtl_loader_free": (None, [HANDLE], "1.0"),
    "mtl_loader_next": (STATUS, [HANDLE, I64_P], "1.0"),
    "mtl_loader_input": (CHECKED_PTR, [HANDLE], "1.0"),
    "mtl_loader_targets": (HANDLE_OUT, [HANDLE], "1.0"),
    "mtl_loader_masks": (HANDLE_OUT, [HANDLE], "1.0"),
    "mtl_loader_num_batches": (c_int64, [HANDLE], "1.0"),
    "mtl_loader_pass": (c_int64, [HANDLE], "1.0"),
    "mtl_loader_position": (c_int64, [HANDLE], "1.0"),
    "mtl_loader_seek": (STATUS, [HANDLE, c_int64, c_int64], "1.0"),
    # ---- train.h ----
    "mtl_evaluate": (
        STATUS, [HANDLE_OUT, HANDLE, HANDLE_OUT, c_int, c_int64, STR, STR_OUT], "1.0"),
    "mtl_eval_result_free": (None, [HANDLE], "1.0"),
    "mtl_eval_result_count": (c_int, [HANDLE], "1.0"),
    "mtl_eval_result_name": (STR, [HANDLE, c_int], "1.0"),
    "mtl_eval_result_value": (c_double, [HANDLE, c_int], "1.0"),
    "mtl_eval_result_get": (STATUS, [HANDLE, STR, DOUBLE_P], "1.0"),
    "mtl_trainer_create": (STATUS, [HANDLE_OUT, HANDLE, HANDLE, HANDLE], "1.0"),
    "mtl_trainer_free": (None, [HANDLE], "1.0"),
    "mtl_trainer_set_data": (STATUS, [HANDLE, HANDLE, HANDLE], "1.0"),
    "mtl_trainer_set_task_data": (STATUS, [HANDLE, STR, HANDLE, HANDLE], "1.0"),
    "mtl_trainer_set_int": (STATUS, [HANDLE, STR, c_int64], "1.0"),
    "mtl_trainer_set_double": (STATUS, [HANDLE, STR, c_double], "1.0"),
    "mtl_trainer_set_string": (STATUS, [HANDLE, STR, STR], "1.0"),
    "mtl_trainer_get_int": (STATUS, [HANDLE, STR, I64_P], "1.0"),
    "mtl_trainer_get_double": (STATUS, [HANDLE, STR, DOUBLE_P], "1.0"),
    "mtl_trainer_get_string": (STATUS, [HANDLE, STR, STR_OUT], "1.0"),
    "mtl_trainer_key_name": (STR, [c_int], "1.0"),
    "mtl_trainer_set_progress": (STATUS, [HANDLE, PROGRESS_FN, c_void_p], "1.0"),
    "mtl_trainer_run": (STATUS, [HANDLE], "1.0"),
    "mtl_trainer_evaluate": (STATUS, [HANDLE, HANDLE_OUT], "1.0"),
    "mtl_trainer_eval_result": (HANDLE, [HANDLE], "1.0"),
    "mtl_trainer_resume": (STATUS, [HANDLE, STR], "1.0"),
    "mtl_trainer_epoch": (c_int64, [HANDLE], "1.0"),
    "mtl_trainer_step": (c_int64, [HANDLE], "1.0"),
    "mtl_trainer_steps_per_epoch": (c_int64, [HANDLE], "1.0"),
    "mtl_trainer_stop_reason": (STR, [HANDLE], "1.0"),
    "mtl_trainer_best": (STATUS, [HANDLE, DOUBLE_P, I64_P, I64_P], "1.0"),
    # ---- io.h ----
    "mtl_checkpoint_save": (STATUS, [STR, HANDLE, HANDLE, HANDLE], "1.0"),
    "mtl_checkpoint_load": (STATUS, [STR, HANDLE_OUT, HANDLE_OUT, HANDLE_OUT], "1.0"),
    "mtl_checkpoint_load_into": (STATUS, [STR, HANDLE, HANDLE, HANDLE], "1.0"),
    "mtl_checkpoint_describe": (STATUS, [STR, STR, c_size_t, SIZE_P], "1.0"),
    "mtl_model_save_safetensors": (STATUS, [HANDLE, STR], "1.0"),
    "mtl_model_load_safetensors": (STATUS, [HANDLE, STR], "1.0"),
    # ---- config.h ----
    "mtl_config_load": (STATUS, [HANDLE_OUT, STR], "1.0"),
    "mtl_config_parse": (STATUS, [HANDLE_OUT, STR, c_size_t, STR, STR], "1.0"),
    "mtl_config_free": (None, [HANDLE], "1.0"),
    "mtl_config_set": (STATUS, [HANDLE, STR, STR], "1.0"),
    "mtl_config_get_int": (STATUS, [HANDLE, STR, I64_P], "1.0"),
    "mtl_config_get_double": (STATUS, [HANDLE, STR, DOUBLE_P], "1.0"),
    "mtl_config_get_string": (STATUS, [HANDLE, STR, STR_OUT], "1.0"),
    "mtl_config_count": (STATUS, [HANDLE, STR, INT_P], "1.0"),
    "mtl_config_data_path": (STATUS, [HANDLE, STR, STR, c_size_t, SIZE_P], "1.0"),
    "mtl_config_num_tasks": (c_int, [HANDLE], "1.0"),
    "mtl_config_task_name": (STR, [HANDLE, c_int], "1.0"),
    "mtl_config_dump": (STATUS, [HANDLE, STR, c_size_t, SIZE_P], "1.0"),
    "mtl_config_build_model": (STATUS, [HANDLE, HANDLE_OUT], "1.0"),
    "mtl_config_build_optimizer": (STATUS, [HANDLE, HANDLE, c_int64, HANDLE_OUT], "1.0"),
    "mtl_config_build_weighting": (STATUS, [HANDLE, HANDLE_OUT], "1.0"),
    "mtl_config_build_dataset": (STATUS, [HANDLE, STR, STR, HANDLE_OUT], "1.0"),
    "mtl_config_build_trainer": (
        STATUS, [HANDLE, HANDLE, HANDLE, HANDLE, HANDLE_OUT], "1.0"),
    "mtl_config_encode_csv": (STATUS, [HANDLE, STR, HANDLE_OUT], "1.0"),
    # ---- datasets.h ----
    "mtl_multifashion_build": (STATUS, [STR, STR, c_uint64, c_int64], "1.0"),
}


class _Namespace:
    """The declared functions as attributes (``C.mtl_tensor_create(...)``)."""

    def __init__(self):
        self._cdll = None
        self.missing: list[str] = []

    def __repr__(self):
        return f"<libmtl functions from {library_path()!r}>"


C = _Namespace()
_loaded_path: str | None = None


def library_path() -> str | None:
    """The path (or soname) the library was loaded from."""
    return _loaded_path


def _decode(b: bytes | None) -> str:
    return "" if b is None else b.decode("utf-8", "replace")


def make_error(status: int, function: str | None) -> errors.MtlError:
    """Build the exception for a failed call from the thread's last error."""
    message = ""
    if C.mtl_last_status() == status:
        message = _decode(C.mtl_last_error())
    if not message:
        message = f"{function}: {_decode(C.mtl_status_string(status))}"
    return errors.error_class(status)(message, status, function)


def _check_status(result, func, args):
    if result != 0:
        raise make_error(result, func.__name__)
    return result


def _check_ptr(result, func, args):
    if not result:
        status = C.mtl_last_status() or errors.InvalidArgumentError.status
        raise make_error(status, func.__name__)
    return result


def _since_tuple(since: str) -> tuple[int, int]:
    major, minor = since.split(".")
    return int(major), int(minor)


def _missing_stub(name: str, since: str):
    def stub(*args, **kwargs):
        raise errors.UnsupportedError(
            f"{name} needs libmtl {since} or later; the loaded library is "
            f"{_decode(C.mtl_version_string())} ({_loaded_path})",
            errors.UnsupportedError.status, name)

    stub.__name__ = name
    return stub


def _declare(cdll, version: int) -> None:
    lib_release = (version // 10000, (version // 100) % 100)
    C._cdll = cdll
    for name, (restype, argtypes, since) in DECLARATIONS.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            if _since_tuple(since) <= lib_release:
                raise ImportError(
                    f"mtl: {_loaded_path} lacks {name} (since {since}) although it reports "
                    f"version {version}; the library is broken or mismatched") from None
            C.missing.append(name)
            setattr(C, name, _missing_stub(name, since))
            continue
        if restype == STATUS:
            fn.restype = c_int
            fn.errcheck = _check_status
        elif restype == CHECKED_PTR:
            fn.restype = c_void_p
            fn.errcheck = _check_ptr
        else:
            fn.restype = restype
        fn.argtypes = argtypes
        setattr(C, name, fn)


def _candidates():
    env = os.environ.get("MTL_LIBRARY")
    if env:
        # An explicit choice must work: no silent fallback to another copy.
        yield env, True
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("libmtl.so.%d" % EXPECTED_MAJOR, "libmtl.so", "libmtl.dylib", "mtl.dll"):
        path = os.path.join(here, name)
        if os.path.exists(path):
            yield path, False
    found = ctypes.util.find_library("mtl")
    if found:
        yield found, False
    if sys.platform.startswith("linux"):
        yield "libmtl.so.%d" % EXPECTED_MAJOR, False


def load_library():
    """Find, load and declare libmtl; returns the ctypes.CDLL. Idempotent."""
    global _loaded_path
    if C._cdll is not None:
        return C._cdll
    tried = []
    for path, explicit in _candidates():
        try:
            cdll = ctypes.CDLL(path)
        except OSError as exc:
            if explicit:
                raise ImportError(f"mtl: cannot load MTL_LIBRARY={path!r}: {exc}") from exc
            tried.append(f"{path}: {exc}")
            continue
        if not hasattr(cdll, "mtl_version"):
            tried.append(f"{path}: not libmtl (no mtl_version)")
            if explicit:
                raise ImportError(f"mtl: MTL_LIBRARY={path!r} is not libmtl (no mtl_version)")
            continue
        cdll.mtl_version.restype = c_int
        cdll.mtl_version.argtypes = []
        version = cdll.mtl_version()
        if version // 10000 != EXPECTED_MAJOR:
            raise ImportError(
                f"mtl: {path} is libmtl {version // 10000}.{(version // 100) % 100}."
                f"{version % 100} but these bindings need major version {EXPECTED_MAJOR}")
        _loaded_path = path
        _declare(cdll, version)
        return cdll
    raise ImportError(
        "mtl: libmtl.so.%d not found. Build it (meson setup build && ninja -C build) and set "
        "MTL_LIBRARY=/path/to/build/libmtl/libmtl.so.%d, or install it (ninja -C build install; "
        "ldconfig). Tried: %s" % (EXPECTED_MAJOR, EXPECTED_MAJOR, "; ".join(tried) or "nothing"))
