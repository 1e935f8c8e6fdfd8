"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from api_schemas.datasets import DatasetInfo
from api_schemas.explanations import ExplanationResult
from api_schemas.jobs import JobState, JobStatus
from api_schemas.methods import MethodInfo, MethodList
from api_schemas.models import ModelInfo, ModelList, PredictResponse
from lantern_client import _common as c
from lantern_client.errors import LanternAPIError, LanternTimeoutError
from lantern_client.inside import (
    NmfGroups,
    SemanticDictionary,
    dictionary_of,
    groups_of,
    thumbnail_names,
)
from lantern_client.series import SeriesAttribution
from lantern_client.tabular import FeatureWeights
from lantern_client.text import WordAttributions, text_input, word_attributions_of


class LanternClient:
    """Talks to a Lantern service over HTTP (httpx).

    >>> with LanternClient("http://localhost:8000") as lantern:
    ...     result = lantern.explain("cat.jpg", "efficientnet-lite0", "occlusion", wait=30)

    ``url`` defaults to ``$LANTERN_URL`` or http://localhost:8000; ``api_key`` is sent as
    ``Authorization: Bearer``; ``timeout`` bounds each HTTP request (seconds). API errors
    raise :class:`LanternAPIError` with the status and the body's code, message and details.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = (url or c.default_url()).rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.url, headers=c.headers(api_key), timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LanternClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- models and methods -------------------------------------------------------------

    def list_models(self) -> list[ModelInfo]:
        return c.parse(ModelList, self._http.get("/v1/models")).models

    def get_model(self, name: str) -> ModelInfo:
        return c.parse(ModelInfo, self._http.get(c.model_path(name)))

    def upload_model(
        self,
        model: c.ModelInput,
        manifest: c.ManifestInput,
        *,
        training: c.ModelInput | None = None,
    ) -> ModelInfo:
        """Register an ``.onnx`` model (path or bytes) with its manifest; a tabular model
        with its ``training`` sample (a CSV or Parquet path, or bytes), whose statistics
        the server computes and keeps with the version."""
        fname, data = c.model_bytes(model)
        files = {"file": (fname, data, "application/octet-stream")}
        if training is not None:
            files["training"] = c.sample_bytes(training)
        r = self._http.post(
            "/v1/models", files=files, data={"manifest": c.manifest_json(manifest)}
        )
        return c.parse(ModelInfo, r)

    def delete_model(self, name: str) -> None:
        c.check(self._http.delete(c.model_path(name)))

    # -- datasets -----------------------------------------------------------------------

    def callback_secret(self) -> str:
        """The secret that signs this key's completion callbacks (verify them with
        ``jobs.callbacks.verify`` or docs/CALLBACKS.md's recipe)."""
        r = c.check(self._http.get("/v1/keys/me/callback-secret"))
        return str(r.json()["secret"])

    def list_datasets(self) -> list[DatasetInfo]:
        from api_schemas.datasets import DatasetList

        return c.parse(DatasetList, self._http.get("/v1/datasets")).datasets

    def get_dataset(self, name: str) -> DatasetInfo:
        from urllib.parse import quote

        return c.parse(DatasetInfo, self._http.get(f"/v1/datasets/{quote(name, safe='')}"))

    def upload_dataset(
        self, archive: Path | bytes, name: str, *, index: str | None = None,
        strict: bool = False, description: str = "",
    ) -> DatasetInfo:
        """Register a zip of images (a folder per class, or an index CSV/JSON inside)."""
        data = archive if isinstance(archive, bytes) else Path(archive).read_bytes()
        fields = {"name": name, "strict": "true" if strict else "false",
                  "description": description, **({"index": index} if index else {})}
        r = self._http.post("/v1/datasets", files={"file": ("dataset.zip", data,
                                                           "application/zip")}, data=fields)
        return c.parse(DatasetInfo, r)

    def register_dataset_directory(
        self, name: str, path: str, *, index: str | None = None, strict: bool = False
    ) -> DatasetInfo:
        """Register a directory on the server, under one of its dataset roots."""
        body = {"name": name, "path": path, "index": index, "strict": strict}
        return c.parse(DatasetInfo, self._http.post("/v1/datasets", json=body))

    def delete_dataset(self, name: str) -> None:
        from urllib.parse import quote

        c.check(self._http.delete(f"/v1/datasets/{quote(name, safe='')}"))

    def analyse_dataset(
        self, dataset: str, model: str, method: str,
        objective: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
        *, progress: c.ProgressCallback | None = None, timeout: float = 600.0,
    ) -> ExplanationResult:
        """Run a dataset analysis (max_activating, min_activating, dataset_predictions)
        over ``dataset`` and wait for its result."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {"model": model, "method": method, "dataset": dataset,
                                "params": dict(params or {})}
        if objective is not None:
            body["objective"] = dict(objective)
        answer = c.explanation_answer(self._http.post("/v1/explanations", json=body))
        if isinstance(answer, ExplanationResult):
            return answer
        return self._follow(answer, progress, deadline, True)

    def methods(self) -> list[MethodInfo]:
        return c.parse(MethodList, self._http.get("/v1/methods")).methods

    def predict(self, image: c.ImageInput, model: str, top_k: int = 5) -> PredictResponse:
        """Top-k labels and softmax scores of ``model`` on ``image``."""
        fname, data = c.image_bytes(image)
        r = self._http.post(
            c.model_path(model, "/predict"),
            files={"file": (fname, data)},
            data={"top_k": str(top_k)},
        )
        return c.parse(PredictResponse, r)

    # -- explanations and jobs ----------------------------------------------------------

    def _post_explanation(
        self,
        image: c.ImageInput,
        model: str,
        method: str,
        target: c.Target,
        params: Mapping[str, Any] | None,
        wait: float | None,
        objective: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
    ) -> ExplanationResult | JobStatus:
        fname, data = c.image_bytes(image)
        query = {"wait": repr(float(wait))} if wait else {}
        r = self._http.post(
            "/v1/explanations",
            params=query,
            files={"file": (fname, data)},
            data=c.explanation_form(model, method, target, params, objective, callback_url),
            timeout=self.timeout + (wait or 0.0),
        )
        return c.explanation_answer(r)

    def submit(
        self,
        image: c.ImageInput,
        model: str,
        method: str,
        target: c.Target = "top1",
        params: Mapping[str, Any] | None = None,
        *,
        objective: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
    ) -> JobStatus:
        """Submit an explanation job; its status (already succeeded when it was cached)."""
        answer = self._post_explanation(
            image, model, method, target, params, None, objective, callback_url
        )
        return self.job(answer.job) if isinstance(answer, ExplanationResult) else answer

    def explain(
        self,
        image: c.ImageInput,
        model: str,
        method: str,
        target: c.Target = "top1",
        params: Mapping[str, Any] | None = None,
        *,
        objective: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        wait: float | None = None,
        poll: bool = True,
        progress: c.ProgressCallback | None = None,
        timeout: float = 600.0,
    ) -> ExplanationResult:
        """Explain ``model``'s prediction on ``image`` with ``method``; the result.

        ``wait`` (at most 60 s) asks the API to answer the result inline when ready within
        that time; otherwise (or then, if it was not ready) the job is polled with
        exponential backoff (0.05 s, ×1.5, at most 1 s) until it ends or ``timeout`` seconds
        have passed, calling ``progress(value, state)``. With ``poll=False`` an unfinished
        job raises :class:`LanternTimeoutError` at once. A failed or cancelled job raises
        :class:`LanternAPIError`. ``objective`` names what to explain instead of the
        ``target`` class (a channel, a neuron, a layer's norm, a direction). With
        ``callback_url`` the API also POSTs the job's status there when it ends (signed; the
        host must be in the server's ``LANTERN_CALLBACK_HOSTS``: docs/CALLBACKS.md).
        """
        deadline = time.monotonic() + timeout
        answer = self._post_explanation(
            image, model, method, target, params, wait, objective, callback_url
        )
        if isinstance(answer, ExplanationResult):
            if progress is not None:
                progress(1.0, JobState.succeeded.value)
            return answer
        return self._follow(answer, progress, deadline, poll)

    def wait(
        self,
        job_id: str,
        *,
        progress: c.ProgressCallback | None = None,
        timeout: float = 600.0,
    ) -> ExplanationResult:
        """Poll a submitted job until it ends; its result (or raise as ``explain`` does)."""
        deadline = time.monotonic() + timeout
        return self._follow(self.job(job_id), progress, deadline, True)

    def _follow(
        self,
        status: JobStatus,
        progress: c.ProgressCallback | None,
        deadline: float,
        poll: bool,
    ) -> ExplanationResult:
        last: list[float] = []
        c.report(progress, status, last)
        delays = c.backoff()
        while not status.state.terminal:
            remaining = deadline - time.monotonic()
            if not poll or remaining <= 0:
                raise LanternTimeoutError(
                    f"The job {status.id} is {status.state.value} "
                    f"({status.progress:.0%}); poll GET /v1/jobs/{status.id}.",
                    status,
                )
            time.sleep(min(next(delays), remaining))
            status = self.job(status.id)
            c.report(progress, status, last)
        if status.state != JobState.succeeded:
            raise LanternAPIError.from_job(status)
        return self.result(status.id)

    def job(self, job_id: str) -> JobStatus:
        return c.parse(JobStatus, self._http.get(c.job_path(job_id)))

    def cancel(self, job_id: str) -> JobStatus:
        return c.parse(JobStatus, self._http.delete(c.job_path(job_id)))

    def result(self, job_id: str) -> ExplanationResult:
        """The JSON result, with the attribution's values."""
        r = self._http.get(c.job_path(job_id, "/result"), params={"format": "json"})
        return c.parse(ExplanationResult, r)

    def result_array(self, job_id: str) -> NDArray[np.float32]:
        """The attribution as a float32 array (from the ``.npy`` download)."""
        r = self._http.get(c.job_path(job_id, "/result"), params={"format": "npy"})
        return c.load_array(r)

    def result_image(
        self,
        job_id: str,
        format: c.ResultFormat = "png",
        colormap: c.Colormap = "jet",
        alpha: float = 0.5,
    ) -> Image.Image:
        """The colour-mapped heatmap (``png``, model input size) or the ``overlay`` on the
        input image (its own size)."""
        r = self._http.get(
            c.job_path(job_id, "/result"),
            params=c.result_params(format, colormap, alpha),
        )
        return c.load_image(r)

    def artifact(self, job_id: str, name: str) -> dict[str, Any]:
        """One artifact of a result as JSON: name, type, shape, axes, meta and data."""
        r = self._http.get(c.artifact_path(job_id, name), params={"format": "json"})
        body: dict[str, Any] = c.check(r).json()
        return body

    def artifact_array(self, job_id: str, name: str) -> NDArray[Any]:
        """An artifact's array (its ``.npy``): values, pixels, segment labels, ..."""
        r = self._http.get(c.artifact_path(job_id, name), params={"format": "npy"})
        return c.load_npy(r)

    def artifact_image(
        self,
        job_id: str,
        name: str,
        format: str = "png",
        colormap: c.Colormap = "jet",
        alpha: float = 0.5,
    ) -> Image.Image:
        """An artifact drawn as an image (``png``; ``overlay`` for an attribution)."""
        r = self._http.get(
            c.artifact_path(job_id, name),
            params={"format": format, "colormap": colormap, "alpha": repr(float(alpha))},
        )
        return c.load_image(r)


    def groups(self, job_id: str, name: str = "groups") -> NmfGroups:
        """An nmf_groups result: the group maps, colours and attributions as numpy, the
        colour-coded map and each group's visualisation as PIL images."""
        body = self.artifact(job_id, name)
        thumbs = [self.artifact_image(job_id, n) for n in thumbnail_names(body)]
        return groups_of(body, self.artifact_image(job_id, name), thumbs)

    def dictionary(self, job_id: str, name: str = "dictionary") -> SemanticDictionary:
        """A semantic_dictionary result: each position's channels and activations as numpy,
        the sheet and every channel's thumbnail as PIL images."""
        body = self.artifact(job_id, name)
        thumbs = [self.artifact_image(job_id, n) for n in thumbnail_names(body)]
        return dictionary_of(body, self.artifact_image(job_id, "sheet"), thumbs)

    # -- text models ----------------------------------------------------------------------

    def explain_text(
        self,
        text: str,
        model: str,
        method: str,
        target: c.Target = "top1",
        params: Mapping[str, Any] | None = None,
        *,
        wait: float | None = 30.0,
        timeout: float = 600.0,
    ) -> ExplanationResult:
        """Explain a text model's prediction on ``text`` (lime, kernel_shap, occlusion over
        words); the result (inline within ``wait`` seconds, else polled)."""
        deadline = time.monotonic() + timeout
        body = {"model": model, "method": method, "target": target,
                "params": dict(params or {}), "input": text_input(text)}
        query = {"wait": repr(float(wait))} if wait else {}
        r = self._http.post(
            "/v1/explanations", params=query, json=body, timeout=self.timeout + (wait or 0.0)
        )
        answer = c.explanation_answer(r)
        if isinstance(answer, ExplanationResult):
            return answer
        return self._follow(answer, None, deadline, True)

    def word_attributions(self, job_id: str, name: str = "attribution") -> WordAttributions:
        """A text result's words, weights (numpy) and character spans."""
        attribution = self.artifact(job_id, name)
        words = self.artifact(job_id, "words") if name == "attribution" else None
        return word_attributions_of(attribution, words)

    def text_html(self, job_id: str, name: str = "attribution") -> str:
        """The highlighted words as an HTML page."""
        r = self._http.get(c.artifact_path(job_id, name), params={"format": "html"})
        return c.check(r).text

    # -- time-series models ---------------------------------------------------------------

    def explain_series(
        self,
        values: Any,
        model: str,
        method: str,
        target: c.Target = "top1",
        params: Mapping[str, Any] | None = None,
        *,
        wait: float | None = 30.0,
        timeout: float = 600.0,
    ) -> ExplanationResult:
        """Explain a series model's prediction on ``values`` (channels × time, a flat list
        for one channel, or a numpy array): grad_cam, occlusion, lime,
        integrated_gradients, saliency. The result (inline within ``wait`` s, else polled)."""
        from lantern_client.series import series_input

        deadline = time.monotonic() + timeout
        body = {"model": model, "method": method, "target": target,
                "params": dict(params or {}), "input": series_input(values)}
        query = {"wait": repr(float(wait))} if wait else {}
        r = self._http.post(
            "/v1/explanations", params=query, json=body, timeout=self.timeout + (wait or 0.0)
        )
        answer = c.explanation_answer(r)
        if isinstance(answer, ExplanationResult):
            return answer
        return self._follow(answer, None, deadline, True)

    def series_attribution(self, job_id: str) -> SeriesAttribution:
        """A series result's input and weights per time step as numpy arrays."""
        from lantern_client.series import series_attribution_of

        return series_attribution_of(
            self.artifact(job_id, "plot"), self.artifact(job_id, "attribution")
        )

    # -- tabular models -------------------------------------------------------------------

    def explain_row(
        self,
        row: Mapping[str, Any] | Sequence[Any],
        model: str,
        method: str,
        target: c.Target = "top1",
        params: Mapping[str, Any] | None = None,
        *,
        wait: float | None = 30.0,
        timeout: float = 600.0,
    ) -> ExplanationResult:
        """Explain a tabular model's prediction on ``row`` (a mapping by feature name, or a
        sequence in feature order): lime, kernel_shap, saliency, integrated_gradients. The
        result (inline within ``wait`` seconds, else polled)."""
        from lantern_client.tabular import row_input

        deadline = time.monotonic() + timeout
        body = {"model": model, "method": method, "target": target,
                "params": dict(params or {}), "input": row_input(row)}
        query = {"wait": repr(float(wait))} if wait else {}
        r = self._http.post(
            "/v1/explanations", params=query, json=body, timeout=self.timeout + (wait or 0.0)
        )
        answer = c.explanation_answer(r)
        if isinstance(answer, ExplanationResult):
            return answer
        return self._follow(answer, None, deadline, True)

    def feature_weights(self, job_id: str, name: str = "features") -> FeatureWeights:
        """A tabular result's weight per feature (numpy), with the row's values."""
        from lantern_client.tabular import feature_weights_of

        return feature_weights_of(self.artifact(job_id, name))
