"""Per-camera person identification when more than PERSON_CANDIDATES faces of another camera outscore the
camera's own: the search widens (to max_n) instead of starting a new person."""
from __future__ import annotations

import numpy as np

from findface_grpc.gateway.persons import PERSON_CANDIDATES
from findface_grpc.v1 import common_pb2, gateway_pb2, video_pb2


def test_the_cameras_own_face_is_found_past_the_first_candidates(alice, people):
    first, second = people["person07"][0], people["person07"][1]
    camera = alice.video.CreateCamera(video_pb2.CreateCameraRequest(meta="widen")).id
    try:
        seen = alice.faces.CreateFace(gateway_pb2.CreateFaceRequest(
            image=common_pb2.ImageSource(content=first), sighting=gateway_pb2.Sighting(camera_id=camera))).faces[0]
        # Near copies of the second photo's own descriptor, from another camera and person: each is more like that
        # photo than the camera's first face is, and there are more of them than the first search looks at.
        query = alice.faces.Extract(gateway_pb2.FaceExtractRequest(
            image=common_pb2.ImageSource(content=second))).faces[0].descriptor
        vector = np.frombuffer(query.vector, dtype=np.float32)
        rng = np.random.default_rng(7)
        copies = []
        for _ in range(PERSON_CANDIDATES + 30):
            v = vector + rng.normal(0, 0.01, vector.shape).astype(np.float32)
            copies.append(gateway_pb2.ImportFace(
                descriptor=common_pb2.Descriptor(model_id=query.model_id, dim=query.dim,
                                                 vector=(v / np.linalg.norm(v)).astype(np.float32).tobytes()),
                person_id="someone-else", cam_id="another-camera"))
        alice.faces.ImportFaces(iter([gateway_pb2.ImportFacesRequest(faces=copies)])).__next__()
        again = alice.faces.CreateFace(gateway_pb2.CreateFaceRequest(
            image=common_pb2.ImageSource(content=second), sighting=gateway_pb2.Sighting(camera_id=camera))).faces[0]
        assert again.person_id == seen.person_id != ""
    finally:
        alice.video.DeleteCamera(video_pb2.DeleteCameraRequest(id=camera))
