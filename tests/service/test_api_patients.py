"""Patients (CRUD, search, pagination, ETags, erasure), intake and visits, and clinic B
never reaching clinic A's."""
from __future__ import annotations

import itertools

import pytest

from svc_helpers import assert_problem, same_as_missing

_codes = itertools.count(1)
MISSING = 987654


def new_patient(client, name: str | None = None, prefix: str = "P") -> dict:
    body = {"code": f"{prefix}-{next(_codes):04d}"}
    if name is not None:
        body["name"] = name
    r = client.post("/api/v1/patients", json=body)
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


# --- patients ------------------------------------------------------------------------------


def test_create_get_update_patient(world):
    a = world.a()
    r = a.post("/api/v1/patients", json={"code": "  NEW-1 ", "name": "Ana Lima"})
    assert r.status_code == 201
    p = r.get_json()
    assert p["code"] == "NEW-1" and p["name"] == "Ana Lima" and p["created_at"]
    assert r.headers["Location"] == f"/api/v1/patients/{p['id']}"
    assert a.get(r.headers["Location"]).get_json() == p
    r = a.patch(f"/api/v1/patients/{p['id']}", json={"name": "Ana M. Lima"})
    assert r.status_code == 200 and r.get_json()["name"] == "Ana M. Lima"
    r = a.patch(f"/api/v1/patients/{p['id']}", json={"name": None})
    assert r.get_json()["name"] is None and r.get_json()["code"] == "NEW-1"


def test_patient_input_errors_name_the_field(world):
    a = world.a()
    body = assert_problem(a.post("/api/v1/patients", json={"name": "no code"}), 422, "invalid_input")
    assert body["field"] == "code" and "code" in body["detail"]
    body = assert_problem(a.post("/api/v1/patients", json={"code": "X-1", "dob": "1990"}), 422, "invalid_input")
    assert body["field"] == "dob"
    body = assert_problem(a.post("/api/v1/patients", json={"code": "   "}), 422, "invalid_input")
    assert body["field"] == "code"
    body = assert_problem(a.post("/api/v1/patients", json={"code": 12}), 422, "invalid_input")
    assert body["field"] == "code"
    body = assert_problem(a.patch("/api/v1/patients/1", json={"code": "CHANGED"}), 422, "invalid_input")
    assert body["field"] in ("code", "name")


def test_duplicate_code_is_409_but_other_clinic_may_reuse_it(world):
    a, b = world.a(), world.b()
    assert a.post("/api/v1/patients", json={"code": "DUP-1"}).status_code == 201
    body = assert_problem(a.post("/api/v1/patients", json={"code": "DUP-1"}), 409, "patient_code_taken")
    assert body["field"] == "code"
    assert b.post("/api/v1/patients", json={"code": "DUP-1"}).status_code == 201


def test_list_search_and_pagination(world):
    a = world.a()
    made = [new_patient(a, name=f"Search Person {i}", prefix="PG") for i in range(5)]
    new_patient(a, name="Someone Else", prefix="ZZ")
    r = a.get("/api/v1/patients?q=search person&limit=2")
    assert r.status_code == 200
    page1 = r.get_json()
    assert [p["id"] for p in page1["items"]] == [made[0]["id"], made[1]["id"]]
    assert page1["next_cursor"]
    link = r.headers["Link"]
    assert link.endswith('>; rel="next"') and "cursor=" in link and "limit=2" in link
    seen = list(page1["items"])
    cursor = page1["next_cursor"]
    while cursor:
        page = a.get(f"/api/v1/patients?q=search person&limit=2&cursor={cursor}").get_json()
        seen += page["items"]
        cursor = page["next_cursor"]
    assert [p["id"] for p in seen] == [p["id"] for p in made]
    last = a.get("/api/v1/patients?q=PG-&limit=50")
    assert "Link" not in last.headers and last.get_json()["next_cursor"] is None
    # search matches the code too, and treats % and _ literally
    assert len(a.get("/api/v1/patients?q=pg-").get_json()["items"]) == 5
    assert a.get("/api/v1/patients?q=%25").get_json()["items"] == []
    assert_problem(a.get("/api/v1/patients?cursor=garbage!"), 400, "invalid_cursor")
    assert_problem(a.get("/api/v1/patients?limit=0"), 422, "invalid_input")
    assert_problem(a.get("/api/v1/patients?limit=1000"), 422, "invalid_input")


def test_list_etag_and_304(world):
    a = world.a()
    r1 = a.get("/api/v1/patients?limit=200")
    etag = r1.headers["ETag"]
    assert etag.startswith('W/"') and "private" in r1.headers["Cache-Control"]
    r2 = a.get("/api/v1/patients?limit=200", headers={"If-None-Match": etag})
    assert r2.status_code == 304 and r2.data == b"" and r2.headers["ETag"] == etag
    new_patient(a)
    r3 = a.get("/api/v1/patients?limit=200", headers={"If-None-Match": etag})
    assert r3.status_code == 200 and r3.headers["ETag"] != etag
    # the ETag is per clinic's content: B's list differs
    assert world.b().get("/api/v1/patients?limit=200").headers["ETag"] != r3.headers["ETag"]


# --- intake --------------------------------------------------------------------------------


def test_intake_put_get(world):
    a = world.a()
    p = new_patient(a)
    url = f"/api/v1/patients/{p['id']}/intake"
    assert_problem(a.get(url), 404, "no_intake")
    r = a.put(url, json={"pregnant": False, "allergies": ["vitamin_c"], "birth_year": 1985})
    assert r.status_code == 200
    got = a.get(url).get_json()
    assert got["document"]["allergies"] == ["vitamin_c"] and got["document"]["schema"] == "mesoscan.intake/1"
    assert got["version"] == 1 and got["patient_id"] == p["id"]
    a.put(url, json={"pregnant": True})
    assert a.get(url).get_json()["document"]["pregnant"] is True


@pytest.mark.parametrize("body, field", [
    ('{"pregnant": "yes"}', "pregnant"),
    ('{"allergies": ["Vitamin C!"]}', "allergies[0]"),
    ('{"smoker": true}', "smoker"),
    ('{"pregnant": false, "pregnant": true}', "pregnant"),
    ('{"birth_year": 1700}', "birth_year"),
])
def test_intake_errors_name_the_field(world, body, field):
    a = world.a()
    p = new_patient(a)
    r = a.put(f"/api/v1/patients/{p['id']}/intake", data=body, content_type="application/json")
    problem = assert_problem(r, 422, "invalid_input")
    assert problem["field"] == field and field.split("[")[0] in problem["detail"]


def test_intake_needs_json(world):
    a = world.a()
    p = new_patient(a)
    assert_problem(a.put(f"/api/v1/patients/{p['id']}/intake", data="pregnant=no",
                         content_type="application/x-www-form-urlencoded"), 415, "unsupported_media_type")
    problem = assert_problem(a.put(f"/api/v1/patients/{p['id']}/intake", data="{oops",
                                   content_type="application/json"), 400, "invalid_json")
    assert "JSON" in problem["detail"]
    problem = assert_problem(a.put(f"/api/v1/patients/{p['id']}/intake", json=["not", "an", "object"]),
                             422, "invalid_input")
    assert "object" in problem["detail"]


# --- visits --------------------------------------------------------------------------------


def test_visits_create_list_get(world):
    a = world.a()
    p = new_patient(a)
    url = f"/api/v1/patients/{p['id']}/visits"
    r = a.post(url, json={"date": "2025-03-17", "ingredients": ["hyaluronic_acid", "vitamin_c"],
                          "device": "LB212", "regions": ["forehead", "cheek_left"], "notes": "first session"})
    assert r.status_code == 201
    v = r.get_json()
    assert v["date"] == "2025-03-17" and v["ingredients"] == ["hyaluronic_acid", "vitamin_c"] and v["device"] == "LB212"
    assert r.headers["Location"] == f"/api/v1/visits/{v['id']}"
    assert a.get(r.headers["Location"]).get_json() == v
    a.post(url, json={"date": "2025-03-03"})
    a.post(url, json={"date": "2025-03-31"})
    page = a.get(url + "?limit=2").get_json()
    assert [x["date"] for x in page["items"]] == ["2025-03-03", "2025-03-17"]
    rest = a.get(url + f"?limit=2&cursor={page['next_cursor']}").get_json()
    assert [x["date"] for x in rest["items"]] == ["2025-03-31"] and rest["next_cursor"] is None


@pytest.mark.parametrize("body, field", [
    ({"date": "17/03/2025"}, "date"),
    ({}, "date"),
    ({"date": "2025-03-17", "ingredients": ["Hyaluronic Acid"]}, "ingredients[0]"),
    ({"date": "2025-03-17", "regions": "forehead"}, "regions"),
    ({"date": "2025-03-17", "dose_ml": 2}, "dose_ml"),
])
def test_visit_errors_name_the_field(world, body, field):
    a = world.a()
    p = new_patient(a)
    problem = assert_problem(a.post(f"/api/v1/patients/{p['id']}/visits", json=body), 422, "invalid_input")
    assert problem["field"] == field


# --- erasure -------------------------------------------------------------------------------


def test_delete_patient_is_erasure_with_audit(world):
    from service.storage import repository as repo

    a = world.a()
    p = new_patient(a, name="To Be Erased")
    a.put(f"/api/v1/patients/{p['id']}/intake", json={"pregnant": False})
    a.post(f"/api/v1/patients/{p['id']}/visits", json={"date": "2025-01-01"})
    r = a.delete(f"/api/v1/patients/{p['id']}")
    assert r.status_code == 200
    report = r.get_json()
    assert report["patient_id"] == p["id"] and report["intakes"] == 1 and report["visits"] == 1
    assert report["audit_id"]
    assert_problem(a.get(f"/api/v1/patients/{p['id']}"), 404, "not_found")
    assert_problem(a.delete(f"/api/v1/patients/{p['id']}"), 404, "not_found")
    with world.app.extensions["mesoscan"].storage.session() as s:
        entries = [e for e in repo.list_audit(s, world.clinic_a) if e.action == "patient.erase"]
        assert any(e.object_id == p["id"] for e in entries)


# --- tenancy -------------------------------------------------------------------------------


def test_clinic_b_cannot_reach_clinic_a_patients_intakes_visits(world):
    a, b = world.a(), world.b()
    p = new_patient(a, name="Private Person", prefix="TEN")
    pid = p["id"]
    a.put(f"/api/v1/patients/{pid}/intake", json={"pregnant": False})
    v = a.post(f"/api/v1/patients/{pid}/visits", json={"date": "2025-02-02"}).get_json()

    pairs = [
        (b.get(f"/api/v1/patients/{pid}"), b.get(f"/api/v1/patients/{MISSING}")),
        (b.patch(f"/api/v1/patients/{pid}", json={"name": "hijacked"}),
         b.patch(f"/api/v1/patients/{MISSING}", json={"name": "hijacked"})),
        (b.delete(f"/api/v1/patients/{pid}"), b.delete(f"/api/v1/patients/{MISSING}")),
        (b.get(f"/api/v1/patients/{pid}/intake"), b.get(f"/api/v1/patients/{MISSING}/intake")),
        (b.put(f"/api/v1/patients/{pid}/intake", json={"pregnant": True}),
         b.put(f"/api/v1/patients/{MISSING}/intake", json={"pregnant": True})),
        (b.get(f"/api/v1/patients/{pid}/visits"), b.get(f"/api/v1/patients/{MISSING}/visits")),
        (b.post(f"/api/v1/patients/{pid}/visits", json={"date": "2025-02-03"}),
         b.post(f"/api/v1/patients/{MISSING}/visits", json={"date": "2025-02-03"})),
        (b.get(f"/api/v1/visits/{v['id']}"), b.get(f"/api/v1/visits/{MISSING}")),
        (b.get(f"/api/v1/patients/{pid}/analyses"), b.get(f"/api/v1/patients/{MISSING}/analyses")),
    ]
    for other, missing in pairs:
        same_as_missing(other, missing)
    # B's list and search never show A's patients
    assert all(x["id"] != pid for x in b.get("/api/v1/patients?limit=200").get_json()["items"])
    assert b.get("/api/v1/patients?q=Private Person").get_json()["items"] == []
    # and nothing of A's changed
    assert a.get(f"/api/v1/patients/{pid}").get_json()["name"] == "Private Person"
    assert a.get(f"/api/v1/patients/{pid}/intake").get_json()["document"]["pregnant"] is False
    assert len(a.get(f"/api/v1/patients/{pid}/visits").get_json()["items"]) == 1
