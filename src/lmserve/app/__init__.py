"""`lmserve app`: the page lmserve serves itself on loopback, and the API listener switch."""
