"""The issue's full disk, end to end: a real `spanqa serve` whose index folder fills up (every write
under it fails with ENOSPC, through the LD_PRELOAD shim of tests/faults/failwrite.c, switched by a
control file), then gets its space back. While full: uploads, deletions and feedback answer 507
with a plain reason, questions and searches are answered, /readyz stays ready; once space returns
the same requests succeed, and the index checks sound."""

from __future__ import annotations

from service_harness import ServeProcess, write_knowledge_base

from spanqa.indexing.store.check import check_index

UPLOAD = b"The harbour crane lifts forty tonnes at full reach."


def test_spanqa_serve_on_a_full_disk_loses_nothing_and_recovers(tmp_path, failwrite_shim, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    write_knowledge_base(tmp_path / "docs")
    index_dir = tmp_path / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index(
        [tmp_path / "docs"], workers=1
    )
    full = tmp_path / "disk-is-full"
    environment = {"LD_PRELOAD": str(failwrite_shim), "FAILWRITE_CONTROL": str(full), "FAILWRITE_PREFIX": str(index_dir)}
    server = ServeProcess(index_dir, tiny_qa_model_dir, environment)
    client = server.client
    try:
        files = client.get("/v1/files").json()["files"]
        policy = next(entry for entry in files if entry["name"] == "vacation_policy.pdf")
        answer = client.post("/v1/ask", json={"question": "How many days of paid vacation?"}).json()["answers"][0]
        full.touch()  # the disk is full from here on

        upload = client.post("/v1/files", files=[("files", ("crane.txt", UPLOAD))])
        deletion = client.delete(f"/v1/files/{policy['id']}")
        feedback = client.post("/v1/feedback", json={"question": "How many days of paid vacation?", "correct": True,
                                                     "answer": {key: answer[key] for key in ("file_id", "page", "start", "end", "text")}})
        for response in (upload, deletion, feedback):
            assert response.status_code == 507, response.text
            body = response.json()
            assert body["error"] == "insufficient_storage" and "disk is full" in body["detail"]
            assert str(tmp_path) not in response.text
        asked = client.post("/v1/ask", json={"question": "How many days of paid vacation?"})
        searched = client.post("/v1/search", json={"query": "supplier penalty"})
        assert asked.status_code == 200 and asked.json()["answers"][0]["text"] == answer["text"]
        assert searched.status_code == 200 and searched.json()["passages"]
        assert client.get("/v1/files").json()["files"] == files
        assert client.get("/readyz").status_code == 200

        full.unlink()  # space returns
        accepted = client.post("/v1/files", files=[("files", ("crane.txt", UPLOAD))])
        assert accepted.status_code == 202, accepted.text
        job = server.job_when(accepted.json()["job"], ("done", "failed"))
        assert job["files"][0]["status"] == "indexed", job
        assert client.delete(f"/v1/files/{policy['id']}").status_code == 200
        passages = client.post("/v1/search", json={"query": "harbour crane tonnes", "top_k": 3}).json()["passages"]
        assert UPLOAD.decode() in [passage["text"] for passage in passages]
        assert client.get("/readyz").status_code == 200
    finally:
        full.unlink(missing_ok=True)
        server.kill()
    assert "Traceback" not in "".join(server.log), "".join(server.log)[-3000:]
    health = check_index(index_dir)
    assert health.sound, health.findings
    assert health.files == len(files)  # one file deleted, one uploaded
