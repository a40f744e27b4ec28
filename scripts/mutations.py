"""The bugs ``scripts/mutation_check.py`` plants, one at a time, and the tests that must fail.

Each entry replaces ``old`` (which must occur exactly once in ``path``) by ``new``. Add an
entry whenever a test is written to catch a bug; update it when the code it names moves.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    # -- one request path, one copy of each rule ---------------------------------------------
    Mutation(
        "prepare: lora tags stay in the prompt",
        "engine/validation.py",
        "        prompt, tags = split_lora_tags(prompt)\n",
        "        _, tags = split_lora_tags(prompt)\n",
        ("tests/engine/test_validation.py::"
         "test_prepare_moves_lora_tags_out_of_the_prompt_and_keeps_what_was_written",
         "tests/engine/test_validation.py::test_prepare_is_idempotent"),
    ),
    Mutation(
        "prepare: a lora given twice is doubled",
        "engine/validation.py",
        "            if lora not in loras:\n",
        "            if True:\n",
        ("tests/engine/test_validation.py::test_prepare_does_not_double_a_lora_given_twice",),
    ),
    Mutation(
        "service: the queue holds the request before preparation",
        "engine/service.py",
        "        return self.jobs.submit(prepared, owner, user, quota_key, keep_result)\n",
        "        return self.jobs.submit(request, owner, user, quota_key, keep_result)\n",
        ("tests/engine/test_service.py::"
         "test_a_submitted_request_is_prepared_and_validated_once_and_runs_as_it_waited",),
    ),
    Mutation(
        "service: preparing waits for the backend to start",
        "engine/service.py",
        "        return prepare_request(request, self.limits, control_types=CONTROL_TYPES,\n",
        "        self.engine.unload_all()\n"
        "        return prepare_request(request, self.limits, control_types=CONTROL_TYPES,\n",
        ("tests/engine/test_service.py::"
         "test_a_bad_request_is_refused_while_the_backend_is_still_starting",),
    ),
    Mutation(
        "contract: a detector the engine runs is not offered",
        "engine/control_types.py",
        '    "shuffle",\n',
        "",
        ("tests/engine/generate/test_aux_annotators.py::"
         "test_the_contract_lists_exactly_the_detectors_the_engine_runs",),
    ),
    Mutation(
        "ui: the img2img tab cannot be launched alone",
        "ui/img2img_tab.py",
        "    launch_alone(build_img2img_tab)\n",
        "    del launch_alone\n",
        ("tests/ui/test_ui_standalone.py::"
         "test_a_generation_tab_serves_alone_with_its_generate_event",),
    ),
    Mutation(
        "engine: a queued request is prepared and validated again",
        "engine/generate/engine.py",
        "        request = prepared.request\n        started = time.perf_counter()\n",
        "        prepared = self.prepare(prepared)\n        request = prepared.request\n"
        "        started = time.perf_counter()\n",
        ("tests/engine/test_service.py::"
         "test_a_submitted_request_is_prepared_and_validated_once_and_runs_as_it_waited",),
    ),
    Mutation(
        "parameters: the prompt written without its lora tags",
        "engine/metadata/parameters.py",
        '"prompt": prepared.written_prompt,',
        '"prompt": request.prompt,',
        ("tests/engine/metadata/test_infotext.py::"
         "test_image_parameters_show_the_prompt_as_written_with_its_lora_tags",
         "tests/engine/test_service.py::"
         "test_a_submitted_request_is_prepared_and_validated_once_and_runs_as_it_waited"),
    ),
    Mutation(
        "pixel budget: the rule forgets the batch size",
        "engine/limits.py",
        "        return self.max_batch_pixels // max(1, batch_size)\n",
        "        return self.max_batch_pixels\n",
        ("tests/engine/test_validation.py::test_the_fitted_size_is_one_the_validator_accepts",
         "tests/ui/test_ui.py::test_the_size_from_an_init_image_leaves_room_for_the_batch"),
    ),
    Mutation(
        "pixel budget: the UI's size suggestion forgets the batch size",
        "ui/img2img_tab.py",
        "fit_to_limits(*image.size, limits, int(batch))\n",
        "fit_to_limits(*image.size, limits, 1)\n",
        ("tests/ui/test_ui.py::test_the_size_from_an_init_image_leaves_room_for_the_batch",),
    ),
    Mutation(
        "lora tag: the LoRA tab has its own pattern again",
        "ui/lora_tab.py",
        '    text = remove_lora_tags(prompt or "", known).strip()\n',
        '    import re\n'
        '    text = re.sub(r"\\s*<lora:([^:<>]+)(?::[^<>]*)?>", lambda m: "" if m.group(1).strip()'
        ' in known else m.group(0), prompt or "").strip()\n',
        ("tests/ui/test_ui.py::test_apply_styles_replaces_exactly_the_tags_the_engine_reads",),
    ),
    # -- inpainting keeps what it should ------------------------------------------------------
    Mutation(
        "inpaint: no paste-back of the original",
        "engine/generate/engine.py",
        "        if job.overlay is None:\n            return image\n",
        "        return image\n",
        (
            "tests/engine/generate/test_engine.py::test_inpaint_keeps_every_pixel_outside_the_blurred_mask",
            "tests/engine/test_cli.py::test_inpaint_repaints_the_masked_half_and_keeps_the_rest",
        ),
    ),
    Mutation(
        "inpaint: mask ignored (all white)",
        "engine/images.py",
        "    if invert:\n        mask = ImageOps.invert(mask)\n",
        "    mask = mask.point(lambda _: 255)\n",
        ("tests/engine/generate/test_engine.py::test_inpaint_keeps_every_pixel_outside_the_blurred_mask",),
    ),
    Mutation(
        "inpaint: mask not given to the pipeline",
        "engine/generate/engine.py",
        'job.call_args["mask_image"] = mask',
        'job.call_args["mask_image"] = Image.new("L", mask.size, 255)',
        ("tests/engine/generate/test_engine.py::test_inpaint_repaints_according_to_the_mask",),
    ),
    Mutation(
        "inpaint: mask_blur ignored",
        "engine/images.py",
        "    if blur:\n",
        "    if False:\n",
        ("tests/engine/generate/test_engine.py::test_mask_blur_softens_the_edge_of_the_repainted_area",),
    ),
    Mutation(
        "inpaint: invert_mask ignored",
        "engine/images.py",
        "    if invert:\n",
        "    if False:\n",
        ("tests/engine/generate/test_engine.py::test_inverted_mask_keeps_the_white_area",),
    ),
    # -- seeds, resize modes, ControlNet ------------------------------------------------------
    Mutation(
        "seed -1 always the same seed",
        "engine/generate/engine.py",
        "secrets.randbelow(SEED_MODULUS)",
        "1234567",
        ("tests/engine/generate/test_engine.py::test_random_seed_is_reported_and_reproduces",),
    ),
    Mutation(
        "resize and fill stretches",
        "engine/images.py",
        "return _fit_and_pad(image, width, height)",
        "pass",
        ("tests/engine/test_images.py::test_resize_and_fill_keeps_the_aspect_and_repeats_the_edges",),
    ),
    Mutation(
        "ControlNet guidance start/end ignored",
        "engine/generate/engine.py",
        "control_guidance_start=float(control.start), control_guidance_end=float(control.end)",
        "",
        ("tests/engine/generate/test_engine.py::test_controlnet_guidance_start_and_end_matter",),
    ),
    # -- the user interface and the API ------------------------------------------------------
    Mutation(
        "ui: ETA always '?'",
        "ui/job_runner.py",
        'eta="?" if eta is None else f"{eta:.0f}"',
        'eta="?"',
        ("tests/ui/test_ui.py::test_job_runner_turns_engine_progress_into_gradio_progress_with_eta",),
    ),
    Mutation(
        "jobs: no ETA ever",
        "engine/jobs.py",
        "        if self.started is None or done <= 0:\n",
        "        if True:\n",
        ("tests/ui/test_ui.py::test_job_runner_turns_engine_progress_into_gradio_progress_with_eta",),
    ),
    Mutation(
        "api: inpainting_mask_invert ignored",
        "api/convert.py",
        "invert_mask=bool(body.inpainting_mask_invert)",
        "invert_mask=False",
        ("tests/api/test_api.py::test_inpaint_fields_reach_the_request_as_a1111_means_them",),
    ),
    Mutation(
        "api: mask_blur ignored",
        "api/convert.py",
        "mask_blur=body.mask_blur,",
        "mask_blur=4,",
        ("tests/api/test_api.py::test_inpaint_fields_reach_the_request_as_a1111_means_them",),
    ),
    Mutation(
        "api: model switch ignored",
        "api/routes.py",
        "        if wanted and wanted != service.active_model:\n",
        "        if False:\n",
        ("tests/api/test_api.py::test_lists_and_a_switch_to_the_other_model_for_the_next_generation",),
    ),
    Mutation(
        "service: activate keeps the old model",
        "engine/service.py",
        "        self._active = model\n",
        "        pass\n",
        ("tests/api/test_api.py::test_lists_and_a_switch_to_the_other_model_for_the_next_generation",),
    ),
    Mutation(
        "ui: LoRA weight sliders ignored",
        "ui/lora_tab.py",
        "(card.choice, float(values[card.weight]))",
        "(card.choice, card.choice.weight)",
        ("tests/ui/test_ui.py::test_applying_styles_through_the_ui_updates_the_prompt",),
    ),
    Mutation(
        "ui: txt2img ignores the model picker",
        "ui/generation_panel.py",
        "request_fields(values, self.prompts, self.parameters, values[self.model])",
        "request_fields(values, self.prompts, self.parameters, self.model.value)",
        ("tests/ui/test_ui.py::test_txt2img_sends_a_typed_request",),
    ),
    Mutation(
        "ui: inpaint takes the editor's composite",
        "ui/img2img_tab.py",
        '(values[editor] or {}).get("background")',
        '(values[editor] or {}).get("composite")',
        ("tests/ui/test_ui.py::test_inpaint_with_an_uploaded_mask_after_selecting_its_tab",),
    ),
    Mutation(
        "ui: uploaded mask ignored (all white)",
        "ui/img2img_tab.py",
        "mask = values[mask_upload] or mask_from_editor(values[editor])",
        'mask = Image.new("L", background.size, 255)',
        ("tests/ui/test_ui.py::test_inpaint_with_an_uploaded_mask_after_selecting_its_tab",),
    ),
    Mutation(
        "ui: ControlNet tab ignores the manifest's recommended settings",
        "ui/controlnet_tab.py",
        "        recommended=lambda control: recommended_settings(service,"
        " control.controlnet.value,\n"
        "                                                         service.active_model))\n",
        "        recommended=lambda control: Recommended())\n",
        ("tests/ui/test_ui.py::test_controlnet_tab_starts_at_the_manifests_recommended_settings",),
    ),
    Mutation(
        "ui: txt2img and img2img ignore the manifest's recommended settings",
        "ui/generation_panel.py",
        "else recommended_for_base(service, service.active_model))",
        "else Recommended())",
        ("tests/ui/test_ui.py::test_txt2img_and_img2img_start_at_the_active_models_recommended_settings",),
    ),
    Mutation(
        "ui: the gallery encodes each image again instead of showing the saved PNG",
        "ui/generation_widgets.py",
        "        if item.png is None:\n            return item.image\n",
        "        if True:\n            return item.image\n",
        ("tests/ui/test_ui.py::test_the_gallery_shows_the_very_png_saved_infotext_included",),
    ),
    Mutation(
        "api: the answer encodes each saved image again",
        "api/convert.py",
        "    result = with_png(result)\n",
        "",
        ("tests/api/test_api.py::test_saved_and_sent_images_are_encoded_once_and_sent_as_saved",),
    ),
    Mutation(
        "outputs: saving encodes the image again instead of writing its attached PNG",
        "engine/metadata/outputs.py",
        "        data = png_of(image)\n",
        "        data = encode_png(image)\n",
        ("tests/engine/metadata/test_outputs.py::"
         "test_with_png_attaches_the_saved_bytes_and_saving_writes_them_as_they_are",),
    ),
    # -- the prompt parser -------------------------------------------------------------------
    Mutation(
        "prompt: long prompts parse to nothing",
        "engine/prompt_syntax.py",
        "    remaining, loras = _extract_loras(text)\n",
        "    if len(text) > 10_000:\n        return ParsedPrompt((), ())\n"
        "    remaining, loras = _extract_loras(text)\n",
        ("tests/engine/test_prompt_syntax.py::test_large_inputs_parse_without_losing_text",),
    ),
    Mutation(
        "prompt: LoRA-only prompt parses to nothing",
        "engine/prompt_syntax.py",
        "    remaining, loras = _extract_loras(text)\n",
        "    remaining, loras = _extract_loras(text)\n"
        "    if not remaining:\n        return ParsedPrompt((), ())\n",
        ("tests/engine/test_prompt_syntax.py::test_lora_only_prompt_has_its_lora_and_no_fragments",),
    ),
    # -- the command line --------------------------------------------------------------------
    Mutation(
        "cli: img2img ignores the init image",
        "engine/cli.py",
        "        return r.Img2ImgRequest(init_image=init, strength=args.strength, **common)\n",
        "        return r.Txt2ImgRequest(**common)\n",
        ("tests/engine/test_cli.py::test_img2img_starts_from_the_init_image",),
    ),
    Mutation(
        "cli: img2img strength ignored",
        "engine/cli.py",
        "return r.Img2ImgRequest(init_image=init, strength=args.strength, **common)",
        "return r.Img2ImgRequest(init_image=init, strength=0.75, **common)",
        ("tests/engine/test_cli.py::test_img2img_starts_from_the_init_image",),
    ),
    Mutation(
        "cli: --controlnet ignored",
        "engine/cli.py",
        "    if args.controlnet:\n",
        "    if False:\n",
        ("tests/engine/test_cli.py::test_controlnet_from_the_command_line_uses_the_control_image",),
    ),
    Mutation(
        "cli: --control-weight ignored",
        "engine/cli.py",
        "weight=args.control_weight,",
        "weight=1.0,",
        ("tests/engine/test_cli.py::test_controlnet_from_the_command_line_uses_the_control_image",),
    ),
    Mutation(
        "cli: --mask ignored (plain img2img)",
        "engine/cli.py",
        "        if args.mask:\n",
        "        if False:\n",
        ("tests/engine/test_cli.py::test_inpaint_repaints_the_masked_half_and_keeps_the_rest",),
    ),
    # -- README promises ---------------------------------------------------------------------
    Mutation(
        "zerogpu: gpu_decorator drops spaces.GPU",
        "app.py",
        "    return spaces.GPU\n",
        "    return None\n",
        (
            "tests/app/test_space_gpu.py::test_gpu_decorator_is_spaces_gpu_only_when_spaces_is_installed",
            "tests/app/test_space_gpu.py::test_main_wraps_every_generation_handler_with_spaces_gpu",
            "tests/app/test_space_gpu.py::test_a_generation_from_the_page_runs_inside_spaces_gpu",
        ),
    ),
    Mutation(
        "zerogpu: txt2img not wrapped",
        "ui/generation_panel.py",
        "context.gpu(generation.handler), inputs=inputs,",
        "generation.handler, inputs=inputs,",
        (
            "tests/app/test_space_gpu.py::test_main_wraps_every_generation_handler_with_spaces_gpu",
            "tests/app/test_space_gpu.py::test_a_generation_from_the_page_runs_inside_spaces_gpu",
        ),
    ),
    Mutation(
        "zerogpu: main passes no gpu",
        "app.py",
        "UiOptions(preferences, settings.demo, gpu_decorator(),",
        "UiOptions(preferences, settings.demo, None,",
        (
            "tests/app/test_space_gpu.py::test_main_wraps_every_generation_handler_with_spaces_gpu",
            "tests/app/test_space_gpu.py::test_a_generation_from_the_page_runs_inside_spaces_gpu",
        ),
    ),
    Mutation(
        "zerogpu: on_gpu always wraps",
        "ui/app.py",
        "return self.gpu(handler) if self.gpu else handler",
        "return self.gpu(handler) if self.gpu else (lambda *a, **k: handler(*a, **k))",
        (
            "tests/app/test_space_gpu.py::test_without_spaces_nothing_is_wrapped_and_generation_still_works",
        ),
    ),
    Mutation(
        "from-folder: no verification",
        "engine/downloads/downloader.py",
        "        self._verify(plan)\n        self.store.point_main_at(plan.repo, plan.commit)\n",
        "        self.store.point_main_at(plan.repo, plan.commit)\n",
        (
            "tests/engine/test_cli_download.py::test_from_folder_refuses_a_damaged_file_and_installs_nothing",
        ),
    ),
    Mutation(
        "from-folder: manifest hashes ignored",
        "engine/downloads/downloader.py",
        "plan = pinned(plan_from_folder(job.entry, folder, hashed), job.entry.sha256)",
        "plan = plan_from_folder(job.entry, folder, hashed)",
        (
            "tests/engine/test_cli_download.py::test_from_folder_refuses_a_damaged_file_and_installs_nothing",
        ),
    ),
    Mutation(
        "from-folder: required files not checked",
        "engine/downloads/folder_import.py",
        "if not folder.is_dir() or not required_files_present(entry, folder):",
        "if not folder.is_dir():",
        ("tests/engine/test_cli_download.py::test_from_folder_refuses_a_folder_missing_a_required_file",),
    ),
    Mutation(
        "from-folder: flag ignored",
        "engine/cli.py",
        'if getattr(args, "from_folder", None):',
        "if False:",
        (
            "tests/engine/test_cli_download.py::test_from_folder_installs_the_model_where_the_store_finds_it",
            "tests/engine/test_cli_download.py::test_from_folder_refuses_a_damaged_file_and_installs_nothing",
        ),
    ),
    Mutation(
        "ctrl-c: waits for the transfer",
        "engine/cli.py",
        "            job.wait(CANCEL_WAIT_S)\n",
        "            job.wait()\n",
        (
            "tests/engine/test_cli_download.py::test_ctrl_c_cancels_a_download_cleanly_and_the_next_run_completes",
        ),
    ),
    Mutation(
        "ctrl-c: traceback",
        "engine/cli.py",
        "    except KeyboardInterrupt:\n        return _cancelled(job, args.lang)\n",
        "    except KeyboardInterrupt:\n        raise\n",
        (
            "tests/engine/test_cli_download.py::test_ctrl_c_cancels_a_download_cleanly_and_the_next_run_completes",
        ),
    ),
    Mutation(
        "ctrl-c: reported as success",
        "engine/cli.py",
        "        return _cancelled(job, args.lang)\n",
        "        return 0\n",
        (
            "tests/engine/test_cli_download.py::test_ctrl_c_cancels_a_download_cleanly_and_the_next_run_completes",
        ),
    ),
    Mutation(
        "ctrl-c: partial snapshot visible",
        "engine/downloads/downloader.py",
        '        self.records.write("pending", plan)\n'
        "        job.start_counting(plan.total_bytes - sum(f.size for f in missing), "
        "plan.total_bytes)\n",
        "        self.store.point_main_at(plan.repo, plan.commit)\n"
        "        job.start_counting(plan.total_bytes - sum(f.size for f in missing), "
        "plan.total_bytes)\n",
        (
            "tests/engine/test_cli_download.py::test_ctrl_c_cancels_a_download_cleanly_and_the_next_run_completes",
        ),
    ),
    Mutation(
        "ckpt: refusal opens it with torch.load",
        "engine/store/model_store.py",
        '            raise ModelError("checkpoint_pickle", name=named[0].name)\n',
        '            __import__("torch").load(named[0], weights_only=False)\n',
        (
            "tests/engine/store/test_ckpt_refusal.py::test_the_engine_refuses_a_ckpt_without_unpickling_it",
            "tests/engine/store/test_ckpt_refusal.py::test_the_command_line_refuses_a_ckpt_path_without_unpickling_it",
            "tests/engine/store/test_ckpt_refusal.py::test_the_api_refuses_to_switch_to_or_generate_with_a_ckpt",
        ),
    ),
    Mutation(
        "ckpt: no refusal",
        "engine/store/model_store.py",
        "        self._refuse_pickle(reference)\n",
        "",
        (
            "tests/engine/store/test_ckpt_refusal.py::test_the_engine_refuses_a_ckpt_without_unpickling_it",
            "tests/engine/store/test_ckpt_refusal.py::test_the_command_line_refuses_a_ckpt_path_without_unpickling_it",
            "tests/engine/store/test_ckpt_refusal.py::test_the_api_refuses_to_switch_to_or_generate_with_a_ckpt",
        ),
    ),
    Mutation(
        "ckpt: not listed",
        "engine/store/catalog.py",
        'PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")',
        'PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl")',
        ("tests/engine/store/test_ckpt_refusal.py::test_a_ckpt_is_listed_with_the_reason_but_not_offered",),
    ),
    # -- error codes, HTTP statuses, answer language -----------------------------------------
    Mutation(
        "api: unknown model answers 400 again",
        "api/routes.py",
        "    ErrorCode.UNKNOWN_MODEL: 404, ",
        "    ",
        ("tests/api/test_api.py::test_an_unknown_model_is_404_and_a_busy_one_409_with_code_and_text",),
    ),
    Mutation(
        "api: busy model answers 400 again",
        "api/routes.py",
        "    ErrorCode.MODEL_BUSY: 409,\n",
        "",
        ("tests/api/test_api.py::test_an_unknown_model_is_404_and_a_busy_one_409_with_code_and_text",),
    ),
    Mutation(
        "api: job status in Chinese whatever Accept-Language says",
        "api/routes.py",
        "return _job_status(service, find(job_id, request), _language(request))",
        'return _job_status(service, find(job_id, request), "zh-CN")',
        ("tests/api/test_api.py::test_the_job_status_answers_in_the_language_asked_for",),
    ),
    Mutation(
        "api: someone else's job refused with a fixed bilingual text",
        "api/routes.py",
        "            raise EngineError(ErrorCode.JOB_NOT_YOURS, id=job_id)",
        '            raise HTTPException(status_code=403, detail="not your job / 不是你的任务")',
        ("tests/api/test_api.py::test_the_job_status_answers_in_the_language_asked_for",),
    ),
    Mutation(
        "locales: Accept-Language read as 'starts with en' again",
        "locales/__init__.py",
        '    for tag in _ranked_tags(accept_language or ""):',
        '    for tag in [(accept_language or "").lower()[:2]]:',
        (
            "tests/test_locales.py::test_the_answer_language_is_the_clients_first_choice_that_we_have",
        ),
    ),
    Mutation(
        "locales: Accept-Language weights ignored",
        "locales/__init__.py",
        "    return [tag for _weight, _position, tag in sorted(ranked)]",
        "    return [tag for _weight, _position, tag in ranked]",
        (
            "tests/test_locales.py::test_the_answer_language_is_the_clients_first_choice_that_we_have",
        ),
    ),
    Mutation(
        "locales: a header naming none of ours gets zh-CN, not the app's language",
        "locales/__init__.py",
        "    return default\n\n\ndef error_text(",
        "    return DEFAULT_LANGUAGE\n\n\ndef error_text(",
        ("tests/test_locales.py::test_a_header_naming_none_of_ours_gets_the_apps_language",),
    ),
    Mutation(
        "errors: an unregistered code is accepted",
        "engine/errors.py",
        "        self.code = registered(ErrorCode, code)",
        "        self.code = code",
        ("tests/test_locales.py::test_an_unregistered_code_fails_when_the_error_is_built",),
    ),
    Mutation(
        "errors: an unregistered warning code is accepted",
        "engine/requests.py",
        '        object.__setattr__(self, "code", registered(WarningCode, self.code))',
        "        pass",
        ("tests/test_locales.py::test_an_unregistered_code_fails_when_the_error_is_built",),
    ),
    Mutation(
        "errors: an unregistered code raised (job_not_found misspelt)",
        "api/routes.py",
        "            raise EngineError(ErrorCode.JOB_NOT_FOUND, id=job_id)",
        '            raise EngineError("job_not_fund", id=job_id)',
        ("tests/api/test_api.py::test_async_jobs_answer_at_once_and_only_the_owner_may_cancel",),
    ),
    Mutation(
        "errors: an unregistered code raised in a variable",
        "engine/downloads/sources.py",
        'code = "download_unauthorized" if status == 401 else "download_repo_not_found"',
        'code = "download_unauthorized" if status == 401 else "download_repo_missing"',
        ("tests/engine/downloads/test_downloads.py::test_server_errors_have_their_own_codes",),
    ),
    Mutation(
        "locales: a registered code with no zh-CN text",
        "locales/zh-CN.yaml",
        '  job_not_yours: "任务 {id} 不是你的',
        '  job_not_yours_: "任务 {id} 不是你的',
        ("tests/test_locales.py::test_every_registered_code_has_a_text",),
    ),
    Mutation(
        "locales: a new error code registered without texts",
        "engine/errors.py",
        '    JOB_NOT_YOURS = "job_not_yours"\n',
        '    JOB_NOT_YOURS = "job_not_yours"\n    JOB_EXPIRED = "job_expired"\n',
        ("tests/test_locales.py::test_every_registered_code_has_a_text",),
    ),
    Mutation(
        "locales: a dead error text (its code unregistered)",
        "engine/errors.py",
        '    NAN_OUTPUT = "nan_output"\n',
        "",
        ("tests/test_locales.py::test_every_error_and_warning_text_belongs_to_a_registered_code",),
    ),
    Mutation(
        "locales: a guard refusal registered without texts",
        "api/guard.py",
        '    TOO_MANY_ATTEMPTS = "too_many_attempts"\n',
        '    TOO_MANY_ATTEMPTS = "too_many_attempts"\n'
        '    TOO_MANY_CONNECTIONS = "too_many_connections"\n',
        ("tests/test_locales.py::test_every_registered_code_has_a_text",),
    ),
    Mutation(
        "locales: a warning registered without texts",
        "engine/errors.py",
        '    SAVE_FAILED = "save_failed"\n\n\nCode = ',
        '    SAVE_FAILED = "save_failed"\n    LOW_MEMORY = "low_memory"\n\n\nCode = ',
        ("tests/test_locales.py::test_every_registered_code_has_a_text",),
    ),
    Mutation(
        "locales: a download state without texts",
        "engine/downloads/jobs.py",
        '    PENDING = "pending"\n',
        '    PENDING = "pending"\n    QUEUED = "queued"\n',
        ("tests/test_locales.py::test_every_download_and_model_state_has_a_text",),
    ),
    # -- the launcher (launch.py, installer/) ------------------------------------------------
    Mutation(
        "launcher: a driver exactly at a variant's minimum is refused (off by one)",
        "installer/torch_choice.py",
        "    return padded(driver) >= padded(minimum)\n",
        "    return padded(driver) > padded(minimum)\n",
        ("tests/installer/test_torch_choice.py::test_the_decision_table",),
    ),
    Mutation(
        "launcher: Linux CUDA is sent to the PyTorch index though PyPI serves it",
        "installer/torch_choice.py",
        "        if _at_least(driver, pypi.min_driver_linux):\n",
        "        if False:\n",
        ("tests/installer/test_torch_choice.py::test_the_decision_table",),
    ),
    Mutation(
        "launcher: the --torch / HUAJING_TORCH override is ignored",
        "installer/torch_choice.py",
        "    if override and override != AUTO:\n",
        "    if False:\n",
        ("tests/installer/test_torch_choice.py::test_the_decision_table",),
    ),
    Mutation(
        "launcher: an index is forced on pip instead of the user's configuration",
        "installer/pip_commands.py",
        '    return ["--index-url", pip_index] if pip_index else []\n',
        '    return ["--index-url", pip_index or "https://pypi.org/simple"]\n',
        ("tests/installer/test_pip_commands.py::test_no_index_option_unless_asked",),
    ),
    Mutation(
        "launcher: a torch build swapped by hand is not put back",
        "installer/stamp.py",
        "        wrong_build = installed_build != expected_build\n",
        "        wrong_build = build_changed\n",
        ("tests/installer/test_stamp.py::test_a_torch_swapped_by_hand_is_put_back",),
    ),
    Mutation(
        "launcher: the stamp is written before the install succeeds",
        "installer/install.py",
        "    carry_out(plan, python, requirements, choice, request, steps, installed, run)\n",
        "    stamp_file.write_text(wanted.render(), encoding=\"utf-8\")\n"
        "    carry_out(plan, python, requirements, choice, request, steps, installed, run)\n",
        ("tests/installer/test_launch_end_to_end.py::"
         "test_a_failed_install_names_the_package_and_leaves_no_stamp",),
    ),
    Mutation(
        "launcher: a broken venv is kept",
        "installer/install.py",
        "    if state.health == venv_setup.OK:\n",
        "    if state.health != venv_setup.MISSING:\n",
        ("tests/installer/test_launch_end_to_end.py::test_a_broken_venv_is_rebuilt",),
    ),
    Mutation(
        "launcher: removing a linked venv follows the link",
        "installer/venv_setup.py",
        "    if venv.is_symlink() or venv.is_file():\n",
        "    if venv.is_file():\n",
        ("tests/installer/test_venv.py::test_removing_a_linked_venv_leaves_its_target",),
    ),
    Mutation(
        "pipelines: a derived pipeline turns the shared base to fp32",
        "engine/generate/pipelines.py",
        "from_pipe(base.pipe, dtype=self.placement.dtype,",
        "from_pipe(base.pipe,",
        ("tests/engine/generate/test_derived_pipeline_dtype.py::"
         "test_an_img2img_job_leaves_a_bf16_base_in_bf16",),
    ),
    Mutation(
        "api: a waiting route is not woken by its job's end",
        "api/routes.py",
        "    job.when_finished(wake)\n",
        "",
        ("tests/api/test_wait.py::test_a_waiting_route_wakes_when_its_job_ends_without_polling",),
    ),
    # -- the device report (issue 12): what generation runs on, and the fix -------------------
    Mutation(
        "device report: the banner shows when nothing is wrong",
        "ui/device_view.py",
        "    return isinstance(reading, DeviceReport) and reading.problem is not None\n",
        "    return isinstance(reading, DeviceReport)\n",
        ("tests/ui/test_device_report.py::"
         "test_no_banner_when_nothing_is_wrong_and_the_device_shows_in_settings",),
    ),
    Mutation(
        "device report: the Linux command on Windows",
        "engine/device_report.py",
        '    launcher = "run.bat" if system == "Windows" else "./run.sh"\n',
        '    launcher = "./run.sh"\n',
        ("tests/engine/test_device_report.py::test_the_problem_and_its_fix_command",
         "tests/ui/test_device_report.py::"
         "test_the_banner_names_the_gpu_and_the_fix_for_this_platform"),
    ),
    Mutation(
        "device report: the nvidia-smi probe is ignored",
        "engine/device_report.py",
        "    gpus = nvidia_gpus()\n",
        "    gpus: list[NvidiaGpu] = []\n",
        ("tests/engine/test_device_report.py::test_the_problem_and_its_fix_command",
         "tests/engine/test_device_report.py::test_the_real_probe_with_a_faked_nvidia_smi"),
    ),
    Mutation(
        "device report: nvidia-smi runs (and warns) while on the GPU or asked for the CPU",
        "engine/device_report.py",
        '    if facts.device.startswith("cuda") or facts.requested_device == "cpu":\n',
        "    if False:\n",
        ("tests/engine/test_device_report.py::"
         "test_nvidia_smi_is_not_run_when_nothing_could_come_of_it",),
    ),
    Mutation(
        "device report: a CUDA torch that cannot use the GPU is called a CPU build",
        "engine/device_report.py",
        "    if facts.cuda_version is None:  # a CPU (or ROCm) build of torch\n",
        "    if True:\n",
        ("tests/engine/test_device_report.py::test_the_problem_and_its_fix_command",
         "tests/engine/test_device_report.py::"
         "test_a_cuda_torch_that_cannot_use_the_gpu_names_the_driver_and_cuda_release"),
    ),
    Mutation(
        "service: the device report waits for the backend to start",
        "engine/service.py",
        "        if not self._engine_ready.is_set():\n            return None\n"
        "        return self.engine.device_report()",
        "        return self.engine.device_report()",
        ("tests/engine/test_service.py::"
         "test_the_device_report_is_none_while_the_backend_starts_then_the_backends",),
    ),
    Mutation(
        "service: start-up hooks never run",
        "engine/service.py",
        "        for callback in callbacks:\n",
        "        for callback in []:\n",
        ("tests/engine/test_service.py::"
         "test_the_start_up_hook_runs_once_started_before_the_preload_and_at_once_after",
         "tests/app/test_device_log.py::"
         "test_the_line_comes_once_the_engine_has_started_and_main_does_not_wait"),
    ),
    Mutation(
        "app: the device warning is not logged",
        "app.py",
        "    if report.problem is not None:\n        logger.warning(",
        "    if False:\n        logger.warning(",
        ("tests/app/test_device_log.py::test_start_up_logs_the_device_and_warns_with_the_fix",),
    ),
    Mutation(
        "ui: the banner stays in Chinese when the language switches",
        "ui/device_view.py",
        "banner_markdown(read_device(service),\n"
        "                                                                     language))",
        'banner_markdown(read_device(service), "zh-CN"))',
        ("tests/ui/test_device_report.py::"
         "test_switching_language_in_settings_translates_the_banner_and_the_section",),
    ),
    Mutation(
        "ui: the page keeps what it showed while the engine started",
        "ui/session_view.py",
        "                device.poll: gr.Timer(active=not device.settled())}",
        "                device.poll: gr.Timer(active=False)}",
        ("tests/ui/test_device_report.py::"
         "test_while_the_engine_starts_the_page_says_so_and_asks_again_until_it_has",),
    ),
    Mutation(
        "engine: any speed change releases the loaded models",
        "engine/generate/engine.py",
        "reload = speed.load_time != self.pipelines.speed.load_time",
        "reload = True",
        ("tests/engine/generate/test_speed_settings.py::"
         "test_only_load_time_options_release_the_loaded_models",),
    ),
    Mutation(
        "ui: saved speed settings never reach the engine",
        "ui/settings_tab.py",
        "        if chosen.speed != before.speed:\n            service.set_speed(chosen.speed)",
        "        if False:\n            service.set_speed(chosen.speed)",
        ("tests/ui/test_ui_admin.py::"
         "test_the_admin_changes_speed_settings_and_a_bad_one_changes_nothing",),
    ),
    Mutation(
        "app: a damaged speed field in settings.json is kept",
        "app_settings.py",
        "    bad_speed = preferences.speed.problems()",
        "    bad_speed: list[str] = []",
        ("tests/app/test_app_settings.py::test_a_bad_field_falls_back_alone",),
    ),
    # -- few-step LoRAs and their samplers -----------------------------------------------------
    Mutation(
        "few-step: the pipeline call drops the sampler's gamma (TCD runs at eta 0)",
        "engine/generate/engine.py",
        "callback_on_step_end=on_step_end, **sampler_call_options(request.sampler),\n",
        "callback_on_step_end=on_step_end,\n",
        ("tests/engine/generate/test_few_step_loras.py::test_tcd_samples_with_its_gamma",),
    ),
    Mutation(
        "few-step: TCD has no gamma of its own",
        "engine/samplers.py",
        '                call_options={"eta": TCD_GAMMA}, distilled=True),',
        "                distilled=True),",
        ("tests/engine/test_samplers.py::test_tcd_is_offered_under_its_webui_name_with_its_gamma",
         "tests/engine/generate/test_few_step_loras.py::test_tcd_samples_with_its_gamma"),
    ),
    Mutation(
        "few-step: LCM/TCD's 50-step grid is not widened for more steps",
        "engine/samplers.py",
        'overrides["original_inference_steps"] = max(DISTILLED_GRID_STEPS, steps or 0)',
        'overrides["original_inference_steps"] = DISTILLED_GRID_STEPS',
        ("tests/engine/test_samplers.py::"
         "test_distilled_samplers_keep_their_grid_and_widen_it_for_more_steps",
         "tests/engine/generate/test_few_step_loras.py::test_distilled_samplers_run_past_their_step_grid"),
    ),
    Mutation(
        "few-step: the engine builds the scheduler without the job's steps",
        "engine/generate/engine.py",
        "                                              request.schedule, _denoising_steps(job))",
        "                                              request.schedule)",
        ("tests/engine/generate/test_few_step_loras.py::test_distilled_samplers_run_past_their_step_grid",),
    ),
    Mutation(
        "few-step: DDIM clips SD latents to [-1, 1] (diffusers' default)",
        "engine/samplers.py",
        '    SamplerSpec("DDIM", "DDIMScheduler", {"clip_sample": False}, schedules=_NO_SIGMAS,',
        '    SamplerSpec("DDIM", "DDIMScheduler", {}, schedules=_NO_SIGMAS,',
        ("tests/engine/test_samplers.py::"
         "test_ddim_never_clips_latents_and_trailing_starts_at_the_last_timestep",),
    ),
    Mutation(
        "few-step: many steps never count as far",
        "engine/few_step.py",
        "    if request.steps > STEPS_FACTOR * recommended.steps:",
        "    if False:",
        ("tests/engine/test_few_step.py::test_far_from_lcm",),
    ),
    Mutation(
        "few-step: CFG counts as far only well above 3",
        "engine/few_step.py",
        "    if request.guidance > recommended.guidance + GUIDANCE_MARGIN:",
        "    if request.guidance > recommended.guidance + 2 * GUIDANCE_MARGIN:",
        ("tests/engine/test_few_step.py::test_far_from_lcm",),
    ),
    Mutation(
        "few-step: Hyper-SD's trailing schedule is not checked",
        "engine/few_step.py",
        "            schedule_matters and request.schedule != recommended.schedule):",
        "            False):",
        ("tests/engine/test_few_step.py::test_hyper_sd_needs_its_trailing_schedule_too",),
    ),
    Mutation(
        "few-step: the engine never adds the settings warning",
        "engine/generate/engine.py",
        "                settings_warning = few_step_warning(lora.name, source.sampling, request)",
        "                settings_warning = None",
        ("tests/engine/generate/test_few_step_loras.py::test_far_settings_still_run_and_warn",),
    ),
    Mutation(
        "few-step: a LoRA at weight 0 still warns",
        "engine/generate/engine.py",
        "            if source.sampling is not None and lora.weight != 0:",
        "            if source.sampling is not None:",
        ("tests/engine/generate/test_few_step_loras.py::test_far_settings_still_run_and_warn",),
    ),
    Mutation(
        "few-step: a manifest LoRA's recommended sampling is not passed on",
        "engine/store/loras.py",
        "sampling=entry.recommended if entry.prescribes_sampling else None)",
        "sampling=None)",
        ("tests/engine/generate/test_few_step_loras.py::test_far_settings_still_run_and_warn",),
    ),
    Mutation(
        "manifest: a recommended sampler is not checked",
        "engine/store/manifest.py",
        "        if value is not None and value not in SAMPLERS:",
        "        if False:",
        ("tests/engine/store/test_manifest.py::test_bad_sampling_and_families_name_the_entry",),
    ),
    Mutation(
        "manifest: a recommended schedule the sampler lacks is accepted",
        "engine/store/manifest.py",
        "                recommended.schedule not in SAMPLERS[recommended.sampler].schedules):",
        "                False):",
        ("tests/engine/store/test_manifest.py::test_bad_sampling_and_families_name_the_entry",),
    ),
    Mutation(
        "manifest: a LoRA may name a base and a family at once",
        "engine/store/manifest.py",
        "(self.base is None) == (self.base_family is None):",
        "self.base is None and self.base_family is None:",
        ("tests/engine/store/test_manifest.py::test_bad_sampling_and_families_name_the_entry",),
    ),
    Mutation(
        "catalog: a family LoRA shows no base",
        "engine/store/catalog.py",
        "        base=entry.base_label, weight=entry.recommended.lora_weight or 1.0,",
        "        base=entry.base, weight=entry.recommended.lora_weight or 1.0,",
        ("tests/engine/test_service.py::test_choices_for_the_ui",),
    ),
    Mutation(
        "speed: channels-last is never applied",
        "engine/generate/speed.py",
        "        model.to(memory_format=torch.channels_last)\n",
        "        pass\n",
        ("tests/engine/generate/test_speed_settings.py::test_channels_last_converts_the_unet_and_keeps_the_images",),
    ),
    Mutation(
        "speed: fused QKV stays fused under a LoRA (the LoRA is silently ignored)",
        "engine/generate/speed.py",
        "    if loras_active and fused:",
        "    if False:",
        ("tests/engine/generate/test_speed_settings.py::test_fused_qkv_keeps_the_images_with_and_without_a_lora",),
    ),
    Mutation(
        "speed: compiling is not shown as progress",
        "engine/generate/speed.py",
        "        if self.listener is not None:\n            self.listener()\n",
        "",
        ("tests/engine/generate/test_speed_settings.py::test_compiling_shows_as_progress_and_keeps_the_images",),
    ),
    Mutation(
        "speed: a failing compiler fails the job",
        "engine/generate/speed.py",
        "            self.failed = True\n            return graph.forward\n",
        "            raise\n",
        ("tests/engine/generate/test_speed_settings.py::test_a_failing_compiler_runs_the_job_eager_with_a_warning",),
    ),
    Mutation(
        "speed: a compile failure is not warned about",
        "engine/generate/engine.py",
        "        if self.pipelines.speed.compile_unet and self.pipelines.compile_watch.failed:",
        "        if False:",
        ("tests/engine/generate/test_speed_settings.py::test_a_failing_compiler_runs_the_job_eager_with_a_warning",),
    ),
    Mutation(
        "hotswap: a LoRA weight replaces the scaling tensor (recompiles)",
        "engine/generate/lora_hotswap.py",
        "            if isinstance(scaling, torch.Tensor):\n",
        "            if False:\n",
        ("tests/engine/generate/test_speed_settings.py::test_changing_loras_on_a_compiled_unet_does_not_recompile",),
    ),
    Mutation(
        "hotswap: a LoRA's weight is ignored on a compiled UNet",
        "engine/generate/lora_hotswap.py",
        "            value = weight * units.get(name, 0.0)",
        "            value = units.get(name, 0.0)",
        ("tests/engine/generate/test_speed_settings.py::test_changing_loras_on_a_compiled_unet_does_not_recompile",),
    ),
    Mutation(
        "hotswap: a second slot stays inactive",
        "engine/generate/lora_hotswap.py",
        "        self._activate_slots(unet)\n",
        "",
        ("tests/engine/generate/test_speed_settings.py::test_two_loras_on_a_compiled_unet_then_swapping_both",),
    ),
    Mutation(
        "ui: compiling shows as step 0",
        "ui/job_runner.py",
        "        if state.phase == PHASE_COMPILING:",
        "        if False:",
        ("tests/ui/test_ui.py::test_job_runner_says_when_the_first_step_compiles",),
    ),
    Mutation(
        "api: progress textinfo never says compiling",
        "api/routes.py",
        "        if job.progress.phase == PHASE_COMPILING else None",
        "        if False else None",
        ("tests/api/test_api.py::test_progress_textinfo_says_when_the_first_step_compiles",),
    ),
    # -- memory modes, VAE tiling, TAESD previews -----------------------------------------
    Mutation(
        'memory: auto never offloads',
        'engine/memory_plan.py',
        '    if free_bytes is None or free_bytes >= needed:\n',
        '    if True:\n',
        (
         'tests/engine/test_memory_plan.py::'
         'test_auto_picks_the_fastest_mode_that_fits_what_is_free',
         'tests/engine/generate/test_memory_modes.py::'
         'test_auto_on_cuda_measures_decides_and_calls_diffusers',
        ),
    ),
    Mutation(
        'memory: auto goes from the GPU straight to sequential offload',
        'engine/memory_plan.py',
        '    elif free_bytes >= footprint.largest_part_bytes + margin_bytes:\n',
        '    elif False:\n',
        (
         'tests/engine/test_memory_plan.py::test_the_boundary_is_weights_plus_margin_inclusive',
        ),
    ),
    Mutation(
        "memory: auto leaves no room for a job's working memory",
        'engine/memory_plan.py',
        '    needed = footprint.total_bytes + margin_bytes\n',
        '    needed = footprint.total_bytes\n',
        (
         'tests/engine/test_memory_plan.py::test_the_boundary_is_weights_plus_margin_inclusive',
        ),
    ),
    Mutation(
        'memory: fp32 uses the fp16 margin',
        'engine/memory_plan.py',
        '    return ACTIVATION_MARGIN_BYTES * max(1, element_bytes) // HALF_PRECISION_BYTES\n',
        '    return ACTIVATION_MARGIN_BYTES\n',
        (
         'tests/engine/test_memory_plan.py::test_fp32_needs_twice_the_margin',
        ),
    ),
    Mutation(
        'settings: the old memory mode names are unknown',
        'engine/settings.py',
        'MEMORY_MODE_ALIASES = {"normal": "auto", "low": "model_offload"}',
        'MEMORY_MODE_ALIASES: dict[str, str] = {}',
        (
         'tests/engine/test_memory_plan.py::test_old_mode_names_are_accepted_as_what_they_name',
         'tests/app/test_app_settings.py::test_an_old_files_memory_mode_is_read_as_what_it_named',
        ),
    ),
    Mutation(
        "app: an old file's memory mode is reset to the default",
        'app_settings.py',
        '        preferences, memory_mode=canonical_memory_mode(preferences.memory_mode)\n',
        ('        preferences, memory_mode=(preferences.memory_mode\n'
         '            if preferences.memory_mode in (\n'
         '            "auto", "gpu", "model_offload", "sequential_offload") else None)\n'),
        (
         'tests/app/test_app_settings.py::test_an_old_files_memory_mode_is_read_as_what_it_named',
        ),
    ),
    Mutation(
        'memory: offload modes decode a batch whole',
        'engine/generate/memory.py',
        '    pipe.vae.enable_slicing()\n',
        '    pass\n',
        (
         'tests/engine/generate/test_memory_modes.py::'
         'test_auto_on_cuda_measures_decides_and_calls_diffusers',
        ),
    ),
    Mutation(
        'memory: model offload offloads layer by layer',
        'engine/generate/memory.py',
        '        pipe.enable_model_cpu_offload(device=device)\n',
        '        pipe.enable_sequential_cpu_offload(device=device)\n',
        (
         'tests/engine/generate/test_memory_modes.py::'
         'test_auto_on_cuda_measures_decides_and_calls_diffusers',
         'tests/engine/generate/test_memory_modes.py::'
         'test_a_fixed_mode_is_applied_whatever_is_free',
        ),
    ),
    Mutation(
        'pipelines: the memory mode setting is ignored at load',
        'engine/generate/pipelines.py',
        'place_pipeline(pipe, self.memory_mode, self.placement, reference)',
        'place_pipeline(pipe, "auto", self.placement, reference)',
        (
         'tests/engine/generate/test_memory_modes.py::'
         'test_each_load_uses_the_mode_set_and_the_report_shows_it',
        ),
    ),
    Mutation(
        "engine: the device report never shows the loaded models' modes",
        'engine/generate/engine.py',
        'models=self.pipelines.memory_modes())',
        'models=())',
        (
         'tests/engine/generate/test_memory_modes.py::'
         'test_each_load_uses_the_mode_set_and_the_report_shows_it',
        ),
    ),
    Mutation(
        'vae: large images decode whole',
        'engine/generate/vae_tiling.py',
        '    return width * height > TILED_DECODE_ABOVE_PIXELS\n',
        '    return False\n',
        (
         'tests/engine/generate/test_memory_modes.py::'
         'test_an_image_over_1024_squared_decodes_in_tiles',
        ),
    ),
    Mutation(
        'vae: 1024x1024 decodes in tiles',
        'engine/generate/vae_tiling.py',
        '    return width * height > TILED_DECODE_ABOVE_PIXELS\n',
        '    return width * height >= TILED_DECODE_ABOVE_PIXELS\n',
        (
         'tests/engine/generate/test_memory_modes.py::'
         'test_up_to_1024_squared_the_image_decodes_whole',
        ),
    ),
    Mutation(
        'vae: tiling stays on after a large image',
        'engine/generate/vae_tiling.py',
        '            vae.disable_tiling()\n',
        '            pass\n',
        (
         'tests/engine/generate/test_memory_modes.py::'
         'test_an_image_over_1024_squared_decodes_in_tiles',
        ),
    ),
    Mutation(
        'previews: the taesd method is ignored',
        'engine/generate/previews.py',
        '        if method != "taesd":\n',
        '        if True:\n',
        (
         'tests/engine/generate/test_previews.py::'
         'test_with_taesd_downloaded_each_step_is_decoded_by_it',
         'tests/engine/generate/test_previews.py::'
         'test_a_taesd_downloaded_between_jobs_is_used_from_the_next_job',
        ),
    ),
    Mutation(
        'previews: a missing TAESD fails the job',
        'engine/generate/previews.py',
        ('            logger.info("TAESD is not downloaded: live previews use the approximation")\n'
         '            return None\n'),
        '            raise\n',
        (
         'tests/engine/generate/test_previews.py::'
         'test_without_taesd_previews_fall_back_to_the_projection',
        ),
    ),
    Mutation(
        'previews: the approx method loads TAESD anyway',
        'engine/generate/previews.py',
        ('        if method != "taesd":\n'
         '            return latent_preview\n'
         '        taesd = self._load_taesd()\n'),
        ('        taesd = self._load_taesd()\n'
         '        if method != "taesd":\n'
         '            return latent_preview\n'),
        (
         'tests/engine/generate/test_previews.py::test_the_approx_method_never_loads_taesd',
        ),
    ),
    Mutation(
        'ui: an automatic choice is shown as a fixed one',
        'ui/device_view.py',
        '    if choice.requested == AUTO:\n',
        '    if False:\n',
        (
         'tests/ui/test_memory_and_preview_texts.py::'
         'test_the_device_section_says_what_auto_chose_and_why',
        ),
    ),
    Mutation(
        'ui: the TAESD line shows after the download too',
        'ui/settings_tab.py',
        '    return "" if ready else translate(language, "settings.taesd_missing")\n',
        '    return translate(language, "settings.taesd_missing")\n',
        (
         'tests/ui/test_memory_and_preview_texts.py::'
         'test_the_taesd_line_shows_until_taesd_is_downloaded',
        ),
    ),
    # -- the step cache ----------------------------------------------------------------------
    Mutation(
        "step cache: shallow steps get deep features of zeros",
        "engine/generate/step_cache.py",
        "last(hidden_states=self._deep, temb=emb, res_hidden_states_tuple=skips,\n"
        "                          upsample_size=None, **cross)",
        "last(hidden_states=torch.zeros_like(self._deep), temb=emb,\n"
        "                          res_hidden_states_tuple=skips, upsample_size=None, **cross)",
        ("tests/engine/generate/test_step_cache.py::"
         "test_a_shallow_call_on_the_full_calls_inputs_answers_as_the_full_unet",
         "tests/engine/generate/test_step_cache_jobs.py::"
         "test_cached_images_are_close_to_the_uncached_ones_but_not_equal"),
    ),
    Mutation(
        "step cache: the first full step's features are kept for good",
        "engine/generate/step_cache.py",
        '            self._deep = block_kwargs["hidden_states"].detach()',
        '            self._deep = self._deep if self._deep is not None else \\\n'
        '                block_kwargs["hidden_states"].detach()',
        ("tests/engine/generate/test_step_cache.py::"
         "test_a_shallow_call_on_the_full_calls_inputs_answers_as_the_full_unet",
         "tests/engine/generate/test_step_cache_jobs.py::"
         "test_cached_images_are_close_to_the_uncached_ones_but_not_equal"),
    ),
    Mutation(
        "step cache: skips reach the last up block in the wrong order",
        "engine/generate/step_cache.py",
        "        skips = (sample, *skips)[:len(last.resnets)]",
        "        skips = (sample, *skips)[:len(last.resnets)][::-1]",
        ("tests/engine/generate/test_step_cache.py::"
         "test_a_shallow_call_on_the_full_calls_inputs_answers_as_the_full_unet",),
    ),
    Mutation(
        "step cache: the last up block reads the downsampler's output",
        "engine/generate/step_cache.py",
        "        skips = (sample, *skips)[:len(last.resnets)]",
        "        skips = (sample, *skips)[-len(last.resnets):]",
        ("tests/engine/generate/test_step_cache.py::"
         "test_a_shallow_call_on_the_full_calls_inputs_answers_as_the_full_unet",),
    ),
    Mutation(
        "step cache: ControlNet residuals are dropped on shallow steps",
        "engine/generate/step_cache.py",
        "        if down_block_additional_residuals is not None:",
        "        if False:",
        ("tests/engine/generate/test_step_cache.py::"
         "test_a_shallow_call_on_the_full_calls_inputs_answers_as_the_full_unet",),
    ),
    Mutation(
        "step cache: full steps at 1, N+1... instead of 0, N...",
        "engine/generate/step_cache.py",
        "        if step % self.interval != 0 and self._can_reuse(sample, args, kwargs):",
        "        if step % self.interval != 1 and self._can_reuse(sample, args, kwargs):",
        ("tests/engine/generate/test_step_cache.py::"
         "test_deep_blocks_run_on_every_nth_call_and_shallow_ones_on_every_call",
         "tests/engine/generate/test_step_cache_jobs.py::"
         "test_deep_blocks_run_every_third_step_of_each_batch"),
    ),
    Mutation(
        "step cache: the UNet keeps the cache after the job",
        "engine/generate/step_cache.py",
        "            del unet.forward\n",
        "            pass\n",
        ("tests/engine/generate/test_step_cache.py::"
         "test_the_unets_own_forward_comes_back_after_an_error",
         "tests/engine/generate/test_step_cache_jobs.py::"
         "test_a_cancelled_job_leaves_no_cache_and_the_next_starts_full"),
    ),
    Mutation(
        "step cache: an interval of 1 counts as on",
        "engine/generate/step_cache.py",
        "    if interval < MIN_INTERVAL:\n        return 0",
        "    if interval < 1:\n        return 0",
        ("tests/engine/generate/test_step_cache.py::"
         "test_the_cache_is_off_below_two_and_on_a_compiled_unet",
         "tests/engine/generate/test_step_cache_jobs.py::"
         "test_below_two_the_images_are_the_uncached_ones"),
    ),
    Mutation(
        "step cache: a compiled UNet takes the cache too",
        "engine/generate/step_cache.py",
        'if hasattr(unet, "_orig_mod") or getattr(unet, "_compiled_call_impl", None) is not None:',
        "if False:",
        ("tests/engine/generate/test_step_cache.py::"
         "test_the_cache_is_off_below_two_and_on_a_compiled_unet",
         "tests/engine/generate/test_step_cache_jobs.py::"
         "test_a_compiled_unet_runs_without_the_cache"),
    ),
    Mutation(
        "engine: the step cache setting never reaches the job",
        "engine/generate/engine.py",
        "usable_interval(pipe.unet, self.pipelines.speed.step_cache_interval)",
        "usable_interval(pipe.unet, 0)",
        ("tests/engine/generate/test_step_cache_jobs.py::"
         "test_deep_blocks_run_every_third_step_of_each_batch",),
    ),
    Mutation(
        "engine: the image's parameters do not say the step cache ran",
        "engine/generate/engine.py",
        "                                step_cache=job.step_cache)",
        "                                step_cache=0)",
        ("tests/engine/generate/test_step_cache_jobs.py::"
         "test_the_infotext_names_the_interval_when_the_cache_ran",),
    ),
    Mutation(
        "infotext: the step cache key is not read back",
        "engine/metadata/infotext.py",
        '            "Step cache": ("step_cache", int)}',
        "            }",
        ("tests/engine/generate/test_step_cache_jobs.py::"
         "test_the_infotext_names_the_interval_when_the_cache_ran",),
    ),
    Mutation(
        "bench: the step cache's images are held to bare diffusers'",
        "bench/gpu_run.py",
        "            row.images_match = match if options.exact else None",
        "            row.images_match = match",
        ("tests/bench/test_gpu_bench.py::"
         "test_tiny_run_numbers_are_positive_and_images_match",),
    ),
    Mutation(
        "bench: the step cache counts towards the speed goals",
        "bench/gpu_report.py",
        "                and (r.optimization is None or is_exact(r.optimization))]",
        "                ]",
        ("tests/bench/test_gpu_bench.py::test_tiny_run_checks_the_three_goals",),
    ),
    Mutation(
        "previews: every step makes a preview (the pacer is ignored)",
        "engine/generate/engine.py",
        '                image = preview(kwargs.get("latents")) if pacer.due() else None',
        '                image = preview(kwargs.get("latents"))',
        ("tests/engine/generate/test_previews.py::"
         "test_previews_are_paced_while_progress_comes_every_step",),
    ),
    Mutation(
        "previews: the pacer never remembers its last preview",
        "engine/generate/previews.py",
        "        self._last = now\n        return True",
        "        return True",
        ("tests/engine/generate/test_previews.py::"
         "test_the_pacer_lets_a_preview_through_once_its_interval_has_passed",),
    ),
)
