// The pod sandbox's pause process, built here (no image from outside).
module rolling/tools/pause

go 1.26.0
