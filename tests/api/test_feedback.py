"""POST /feedback: corrections from users, kept for retraining when MNIST_FEEDBACK_DIR is set."""

from __future__ import annotations

from mnist_shared.corrections import load_corrections

STROKE = [[255 if 12 <= x <= 15 else 0 for x in range(28)] for _ in range(28)]


def _seen(client) -> dict:
    response = client.post("/predict?return_input=true", json={"pixels": [STROKE]})
    assert response.status_code == 200, response.text
    return response.json()


def _correct(client, answer: dict, label: int = 7):
    body = {
        "input": answer["predictions"][0]["input"],
        "label": label,
        "variant": answer["variant"],
        "versions": {answer["variant"]: answer["model_version"]},
    }
    return client.post("/feedback", json=body)


def test_feedback_is_off_unless_a_directory_is_set(app_client):
    client = app_client()
    response = _correct(client, _seen(client))
    assert response.status_code == 404
    assert "feedback is off on this server" in response.json()["error"]


def test_a_correction_is_kept_with_the_model_input_only(app_client, tmp_path):
    client = app_client(feedback_dir=tmp_path, feedback_per_minute=2)
    answer = _seen(client)
    response = _correct(client, answer, label=7)
    assert response.status_code == 201, response.text
    (kept,) = tmp_path.glob("*.json")
    assert response.json() == {"kept": kept.name}
    training, held_out = load_corrections(tmp_path)
    (correction,) = training + held_out
    assert correction.label == 7 and correction.variant == answer["variant"]
    assert correction.versions == {answer["variant"]: answer["model_version"]}
    assert correction.pixels.shape == (28, 28) and correction.pixels.max() == 255
    metrics = client.get("/metrics").text
    assert f'mnist_feedback_total{{variant="{answer["variant"]}"}} 1.0' in metrics
    assert _correct(client, answer).status_code == 201
    refused = _correct(client, answer)
    assert refused.status_code == 429
    assert "MNIST_FEEDBACK_PER_MINUTE=2" in refused.json()["error"]
    assert int(refused.headers["retry-after"]) >= 1


def test_a_correction_that_is_not_a_model_input_is_refused(app_client, tmp_path):
    client = app_client(feedback_dir=tmp_path)
    answer = _seen(client)
    answer["predictions"][0]["input"] = "bm90IGEgcG5n"  # "not a png"
    response = _correct(client, answer)
    assert response.status_code == 400
    assert "input is not a 28x28 PNG in base64" in response.json()["error"]
    assert _correct(client, _seen(client), label=12).status_code in (400, 422)
    assert list(tmp_path.glob("*.json")) == []
