// The cluster's watchdog over a judged release (main.go): the standard library alone.
module rolling/watchdog

go 1.26.0
