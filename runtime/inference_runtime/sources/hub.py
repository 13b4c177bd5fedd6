"""Hugging Face Hub sources: one listing at the revision's commit, then each file from ``resolve/<commit>``.

The revision (a branch such as ``main``) is resolved to its commit by the model-info call; every file is
then fetched at that commit, so a push during the download cannot mix two revisions. Sizes and, for LFS
files, sha256 digests come from the same listing (``blobs=True``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import re
from collections.abc import Iterator, Mapping

import httpx2
from huggingface_hub import HfApi, constants, hf_hub_url
from huggingface_hub.errors import (
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session

from inference_policy.model_source import HubSource
from inference_runtime.sources.store import (
    ERROR,
    MAX_FILES,
    NOT_FOUND,
    UNAUTHORISED,
    UNREACHABLE,
    DownloadError,
    RemoteFile,
    safe_name,
)

# Without this the client adds telemetry to the User-Agent and, for that, fetches a registry from the
# endpoint (and caches it under HF_HOME) before the first real request: a request we do not want, and
# a write outside the model root. It is read from the environment at import time, hence set here.
constants.HF_HUB_DISABLE_TELEMETRY = True
# Its INFO lines name every URL, and a Hub redirect's URL carries a signed query: not for our logs.
logging.getLogger("httpx2").setLevel(logging.WARNING)

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
TIMEOUT = httpx2.Timeout(30.0, read=120.0)


class HubFetch:
    """Lists a Hub repository at a revision and streams its files at the resolved commit."""

    def __init__(self, source: HubSource, env: Mapping[str, str]) -> None:
        self.source = source
        self.uri = source.uri
        # Only $HF_TOKEN: never a token file from someone's home folder. False: send no token at all.
        self._token: str | bool = env.get("HF_TOKEN") or False
        self._api = HfApi(endpoint=source.endpoint, token=self._token)
        self.revision = ""

    def listing(self) -> list[RemoteFile]:
        """The files to fetch (all, or those matching the source's patterns); sets :attr:`revision`."""
        with self._errors("the repository listing"):
            info = self._api.model_info(
                self.source.repo, revision=self.source.revision, files_metadata=True, timeout=60
            )
        commit = info.sha or ""
        if not _COMMIT.match(commit):
            raise DownloadError(ERROR, f"{self.uri}: the Hub did not name the revision's commit")
        self.revision = commit
        siblings = info.siblings or []
        if len(siblings) > MAX_FILES:
            raise DownloadError(ERROR, f"{self.uri}: the repository lists more than {MAX_FILES} files")
        files = []
        for sibling in siblings:
            name = safe_name(sibling.rfilename, self.uri)
            if self.source.patterns and not any(fnmatch.fnmatch(name, p) for p in self.source.patterns):
                continue
            if type(sibling.size) is not int or sibling.size < 0:
                raise DownloadError(ERROR, f"{self.uri}: the listing gives no size for '{name}'")
            sha256 = sibling.lfs.sha256 if sibling.lfs else None
            if sha256 is not None and not _SHA256.match(str(sha256)):
                raise DownloadError(ERROR, f"{self.uri}: the listing gives no valid sha256 for '{name}'")
            files.append(RemoteFile(name=name, size=sibling.size, sha256=sha256))
        if not files:
            what = (
                "no file matches the allow_patterns"
                if self.source.patterns
                else "the repository has no files"
            )
            raise DownloadError(NOT_FOUND, f"{self.uri}: {what}")
        return files

    @contextlib.contextmanager
    def stream(self, remote: RemoteFile, offset: int) -> Iterator[tuple[int, Iterator[bytes], RemoteFile]]:
        url = hf_hub_url(self.source.repo, remote.name, revision=self.revision, endpoint=self.source.endpoint)
        headers = build_hf_headers(token=self._token, library_name="inference-runtime")
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with (
            self._errors(f"'{remote.name}'"),
            get_session().stream("GET", url, headers=headers, timeout=TIMEOUT) as r,
        ):
            if r.status_code >= 400:
                r.read()
                r.raise_for_status()
            commit = r.headers.get("X-Repo-Commit")
            if commit and commit != self.revision:
                raise DownloadError(ERROR, f"{self.uri}: '{remote.name}' came from another commit")
            yield (offset if r.status_code == 206 else 0), r.iter_bytes(), remote

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Map the client's exceptions to a category and a message of our own (no URL, no token)."""
        uri = self.uri
        try:
            yield
        except (RepositoryNotFoundError, DisabledRepoError) as exc:
            if exc.response is not None and exc.response.status_code == 401:  # private, gated or missing
                raise DownloadError(
                    UNAUTHORISED,
                    f"{uri}: the Hub refused access (401): HF_TOKEN is missing or cannot read this "
                    "repository (or it does not exist)",
                ) from None
            raise DownloadError(NOT_FOUND, f"{uri}: no such repository") from None
        except RevisionNotFoundError:
            raise DownloadError(NOT_FOUND, f"{uri}: no such revision") from None
        except RemoteEntryNotFoundError:
            raise DownloadError(NOT_FOUND, f"{uri}: {what} is not in the repository") from None
        except GatedRepoError:
            raise DownloadError(
                UNAUTHORISED, f"{uri}: gated repository; HF_TOKEN has no access to it"
            ) from None
        except OfflineModeIsEnabled:
            # The runtime image sets it for vLLM; whatever downloads (the download Job) sets it to 0.
            raise DownloadError(
                ERROR, f"{uri}: HF_HUB_OFFLINE=1 forbids Hub downloads; set HF_HUB_OFFLINE=0 to download"
            ) from None
        except httpx2.HTTPStatusError as exc:
            raise _status_error(uri, what, exc.response.status_code) from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            raise _status_error(uri, what, status) from None
        except httpx2.TimeoutException:
            raise DownloadError(UNREACHABLE, f"{uri}: the Hub did not answer in time ({what})") from None
        except httpx2.TransportError:
            raise DownloadError(UNREACHABLE, f"{uri}: the connection to the Hub failed ({what})") from None
        except httpx2.HTTPError:
            raise DownloadError(ERROR, f"{uri}: the Hub's answer could not be used ({what})") from None
        except (
            AttributeError,
            KeyError,
            TypeError,
            ValueError,
        ):  # the client parsing a listing of the wrong shape
            raise DownloadError(ERROR, f"{uri}: the Hub's answer could not be read ({what})") from None


def _status_error(uri: str, what: str, status: int) -> DownloadError:
    if status in (401, 403):
        return DownloadError(UNAUTHORISED, f"{uri}: the Hub refused {what} ({status}); check HF_TOKEN")
    if status == 404:
        return DownloadError(NOT_FOUND, f"{uri}: {what} was not found (404)")
    if status >= 500 or status == 429:
        return DownloadError(UNREACHABLE, f"{uri}: the Hub answered {status} for {what}; try again later")
    return DownloadError(ERROR, f"{uri}: the Hub answered {status} for {what}")
