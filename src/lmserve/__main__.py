from lmserve.cli import app

app()
