"""An application: a frozen teacher behind an HTTP server (`distillrl serve-teacher`).

`teacher_model` scores and tokenises with the loaded model; `http` is the FastAPI server in front of it (keys,
deadlines, limits, one model worker). The client side is scoring/remote.py."""
