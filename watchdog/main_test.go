package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI is an API server holding one Lease; it records every change asked of it.
type fakeAPI struct {
	mu       sync.Mutex
	lease    map[string]any // nil: no Lease
	renewals int            // GETs of the Lease that find it renewed (the run alive) before it stops
	changes  []string       // "METHOD path body"
	missing  map[string]bool
	gets     map[string]func() any // what a GET of a path other than the Lease answers
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	path := r.URL.Path
	if strings.HasSuffix(path, "/leases/rolling-run-dev") {
		if f.lease == nil {
			http.Error(w, `{"reason":"NotFound"}`, http.StatusNotFound)
			return
		}
		spec := f.lease["spec"].(map[string]any)
		if r.Method == http.MethodGet && f.renewals > 0 {
			f.renewals--
			spec["renewTime"] = time.Now().Add(time.Duration(f.renewals) * time.Second).Format(time.RFC3339Nano)
		}
		if r.Method == http.MethodPatch {
			var patch map[string]map[string]map[string]string
			_ = json.Unmarshal(body, &patch)
			meta := f.lease["metadata"].(map[string]any)
			notes, _ := meta["annotations"].(map[string]any)
			if notes == nil {
				notes = map[string]any{}
				meta["annotations"] = notes
			}
			for k, v := range patch["metadata"]["annotations"] {
				notes[k] = v
			}
			f.changes = append(f.changes, "PATCH lease "+string(body))
		}
		_ = json.NewEncoder(w).Encode(f.lease)
		return
	}
	if get := f.gets[path]; get != nil && r.Method == http.MethodGet {
		_ = json.NewEncoder(w).Encode(get())
		return
	}
	if f.missing[path] {
		http.Error(w, `{"reason":"NotFound"}`, http.StatusNotFound)
		return
	}
	if r.URL.Query().Get("fieldManager") != "" && r.URL.Query().Get("fieldManager") != fieldManager {
		http.Error(w, "wrong field manager", http.StatusBadRequest)
		return
	}
	f.changes = append(f.changes, r.Method+" "+path+" "+r.Header.Get("Content-Type")+" "+string(body))
	_, _ = w.Write([]byte("{}"))
}

func leaseWith(plan string) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{planAnnotation: plan}},
		"spec":     map[string]any{"holderIdentity": "h/1/ci", "leaseDurationSeconds": 2, "renewTime": "t0"},
	}
}

// clock runs time forward by step at each reading: the watchdog's waits then take no real time.
type clock struct {
	t    time.Time
	step time.Duration
}

func (c *clock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

func start(t *testing.T, f *fakeAPI) (*watchdog, *strings.Builder) {
	t.Helper()
	server := httptest.NewServer(f)
	t.Cleanup(server.Close)
	log := &strings.Builder{}
	c := &clock{t: time.Unix(0, 0), step: 250 * time.Millisecond}
	return &watchdog{
		api:       &api{base: server.URL, client: server.Client()},
		namespace: "web", lease: "rolling-run-dev", holder: "h/1/ci", job: "rolling-watchdog-1",
		deployment: "nginx-deployment", poll: time.Millisecond, now: c.now, log: log,
	}, log
}

func TestALostRunsCanaryIsScaledAwayAndSaid(t *testing.T) {
	plan := `{"stage":"canary","release":"app:2","steps":[{"do":"scale","deployment":"nginx-canary","replicas":0,"says":"the canary scaled to 0 pods"}]}`
	f := &fakeAPI{lease: leaseWith(plan), renewals: 5}
	w, log := start(t, f)
	if code := w.run(); code != 0 {
		t.Fatalf("exit %d: %s", code, log)
	}
	all := strings.Join(f.changes, "\n")
	for _, want := range []string{
		`PATCH lease {"metadata":{"annotations":{"rolling/watchdog":"{\"job\":\"rolling-watchdog-1\"`,
		`PATCH /apis/apps/v1/namespaces/web/deployments/nginx-canary/scale application/merge-patch+json {"spec":{"replicas":0}}`,
		`POST /api/v1/namespaces/web/events application/json`,
		`"reason":"RunLost"`,
		`PATCH /apis/apps/v1/namespaces/web/deployments/nginx-deployment application/merge-patch+json {"metadata":{"annotations":{"rolling/watchdog":`,
		`PATCH lease {"metadata":{"annotations":{"rolling/watchdog-acted":`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %s in:\n%s", want, all)
		}
	}
	// It acted only once the renewals had stopped for the Lease's duration, by its own clock.
	if f.renewals != 0 {
		t.Errorf("acted while the run still renewed its Lease (%d renewals left)", f.renewals)
	}
	if strings.Index(all, "nginx-canary/scale") < strings.Index(all, `PATCH lease {"metadata":{"annotations":{"rolling/watchdog":`) {
		t.Errorf("acted before it said it watches:\n%s", all)
	}
}

func TestTheBakeGetsItsPreviousImageBack(t *testing.T) {
	plan := `{"stage":"bake","release":"app:2","steps":[{"do":"image","deployment":"nginx-deployment","container":"nginx","image":"app:1","says":"put back"},{"do":"scale","deployment":"nginx-canary","replicas":0,"says":"canary away"}]}`
	f := &fakeAPI{lease: leaseWith(plan), missing: map[string]bool{"/apis/apps/v1/namespaces/web/deployments/nginx-canary/scale": true}}
	w, log := start(t, f)
	if code := w.run(); code != 0 {
		t.Fatalf("exit %d: %s", code, log)
	}
	all := strings.Join(f.changes, "\n")
	want := `PATCH /apis/apps/v1/namespaces/web/deployments/nginx-deployment application/strategic-merge-patch+json {"spec":{"template":{"spec":{"containers":[{"image":"app:1","name":"nginx"}]}}}}`
	if !strings.Contains(all, want) {
		t.Errorf("missing %s in:\n%s", want, all)
	}
	if !strings.Contains(all, "canary away (nothing to do: not there)") {
		t.Errorf("a step whose object is not there is said, not failed:\n%s", all)
	}
}

func TestARunThatEndsReleasesItsLeaseAndNothingIsDone(t *testing.T) {
	f := &fakeAPI{}
	w, log := start(t, f)
	if code := w.run(); code != 0 || len(f.changes) != 0 {
		t.Fatalf("exit %d, changes %v: %s", code, f.changes, log)
	}
	// Another run holds the stack now: this watchdog's run is over.
	f = &fakeAPI{lease: leaseWith("")}
	f.lease["spec"].(map[string]any)["holderIdentity"] = "h/2/ci"
	w, _ = start(t, f)
	if code := w.run(); code != 0 || len(f.changes) != 0 {
		t.Fatalf("exit %d, changes %v", code, f.changes)
	}
}

func TestAStepTheAPIRefusesFailsTheWatchdogSoItsJobTriesAgain(t *testing.T) {
	plan := `{"stage":"canary","release":"app:2","steps":[{"do":"scale","deployment":"nginx-canary","says":"away"}]}`
	f := &fakeAPI{lease: leaseWith(plan)}
	w, _ := start(t, f)
	server := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/scale") {
			http.Error(rw, "forbidden", http.StatusForbidden)
			return
		}
		f.ServeHTTP(rw, r)
	}))
	defer server.Close()
	w.api = &api{base: server.URL, client: server.Client()}
	if code := w.run(); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	all := strings.Join(f.changes, "\n")
	if !strings.Contains(all, "RunLostMitigationFailed") || strings.Contains(all, actedAnnotation) {
		t.Errorf("a failed step is said and the Lease not marked done:\n%s", all)
	}
}

// cluster is a Deployment of 3 replicas whose template was put back to app:1 while the release app:2 ran
// on all 3; the previous version's pods become ready one at a time, one at each look at the ReplicaSets.
type cluster struct {
	looks int
	f     *fakeAPI
}

func (c *cluster) deployment() any {
	return map[string]any{
		"metadata": map[string]any{"generation": 4},
		"spec": map[string]any{"replicas": 3, "template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "nginx", "image": "app:1"}}}}},
		"status": map[string]any{"observedGeneration": 4},
	}
}

func replicaSetOf(name, owner, image string, replicas, ready int) map[string]any {
	return map[string]any{
		"metadata": map[string]any{"name": name, "ownerReferences": []any{map[string]any{"kind": "Deployment", "name": owner}}},
		"spec": map[string]any{"replicas": replicas, "template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"image": image}}}}},
		"status": map[string]any{"readyReplicas": ready},
	}
}

func (c *cluster) replicaSets() any {
	ready := min(c.looks, 3)
	c.looks++
	// The release's replicas as the watchdog last scaled them.
	replicas := 3
	for _, change := range c.f.changes {
		if strings.Contains(change, "replicasets/nginx-deployment-new/scale") {
			var body struct {
				Spec struct{ Replicas int } `json:"spec"`
			}
			_ = json.Unmarshal([]byte(change[strings.Index(change, "{"):]), &body)
			replicas = body.Spec.Replicas
		}
	}
	return map[string]any{"items": []any{
		replicaSetOf("nginx-deployment-old", "nginx-deployment", "app:1", 3, ready),
		replicaSetOf("nginx-deployment-new", "nginx-deployment", "app:2", replicas, 3),
		// The canary's ReplicaSet runs the release too, but belongs to another Deployment.
		replicaSetOf("nginx-canary-abc", "nginx-canary", "app:2", 1, 1),
	}}
}

func TestTheReleasesPodsLeaveOneForOneAsThePreviousVersionsBecomeReady(t *testing.T) {
	plan := `{"stage":"bake","release":"app:2","steps":[{"do":"image","deployment":"nginx-deployment","container":"nginx","image":"app:1","says":"put back"},{"do":"retire","deployment":"nginx-deployment","image":"app:2","seconds":60,"says":"retired"}]}`
	f := &fakeAPI{lease: leaseWith(plan)}
	c := &cluster{f: f}
	f.gets = map[string]func() any{
		"/apis/apps/v1/namespaces/web/deployments/nginx-deployment": c.deployment,
		"/apis/apps/v1/namespaces/web/replicasets":                  c.replicaSets,
	}
	w, log := start(t, f)
	if code := w.run(); code != 0 {
		t.Fatalf("exit %d: %s", code, log)
	}
	var scaled []string
	for _, change := range f.changes {
		if strings.Contains(change, "/replicasets/") {
			scaled = append(scaled, change[strings.Index(change, "/replicasets/"):])
		}
	}
	want := []string{
		`/replicasets/nginx-deployment-new/scale application/merge-patch+json {"spec":{"replicas":2}}`,
		`/replicasets/nginx-deployment-new/scale application/merge-patch+json {"spec":{"replicas":1}}`,
		`/replicasets/nginx-deployment-new/scale application/merge-patch+json {"spec":{"replicas":0}}`,
	}
	if strings.Join(scaled, "\n") != strings.Join(want, "\n") {
		t.Errorf("the release's pods were not scaled down one for one (never the canary's):\n%s", strings.Join(scaled, "\n"))
	}
	if !strings.Contains(log.String(), "retired\n") {
		t.Errorf("the retirement is said: %s", log)
	}
}

func TestARetirementThatFindsNoReadyPodLeavesTheRestToTheDeployment(t *testing.T) {
	plan := `{"stage":"bake","release":"app:2","steps":[{"do":"retire","deployment":"nginx-deployment","image":"app:2","seconds":5,"says":"retired"}]}`
	f := &fakeAPI{lease: leaseWith(plan)}
	c := &cluster{f: f}
	f.gets = map[string]func() any{
		"/apis/apps/v1/namespaces/web/deployments/nginx-deployment": c.deployment,
		"/apis/apps/v1/namespaces/web/replicasets": func() any {
			return map[string]any{"items": []any{
				replicaSetOf("nginx-deployment-old", "nginx-deployment", "app:1", 3, 0),
				replicaSetOf("nginx-deployment-new", "nginx-deployment", "app:2", 3, 3),
			}}
		},
	}
	w, log := start(t, f)
	if code := w.run(); code != 0 {
		t.Fatalf("exit %d: %s", code, log)
	}
	all := strings.Join(f.changes, "\n")
	if strings.Contains(all, "/replicasets/") {
		t.Errorf("scaled the release's pods away with none of the previous version ready:\n%s", all)
	}
	if !strings.Contains(log.String(), "retired (not done: the previous version's pods were not all ready within 5s") {
		t.Errorf("the give-up is said: %s", log)
	}
}

func TestARunThatHandsItsReleaseOverHasItUndoneAtOnce(t *testing.T) {
	plan := `{"stage":"canary","release":"app:2","steps":[{"do":"scale","deployment":"nginx-canary","replicas":0,"says":"the canary scaled to 0 pods"}]}`
	// The run renews its Lease still (its renewals would last 1000 more looks), but has handed over.
	f := &fakeAPI{lease: leaseWith(plan), renewals: 1000}
	f.lease["metadata"].(map[string]any)["annotations"].(map[string]any)[handoverAnnotation] = `{"job":"rolling-watchdog-1","why":"the run was interrupted"}`
	w, log := start(t, f)
	if code := w.run(); code != 0 {
		t.Fatalf("exit %d: %s", code, log)
	}
	all := strings.Join(f.changes, "\n")
	if !strings.Contains(all, "nginx-canary/scale") || !strings.Contains(all, "handed its release over as it ended (the run was interrupted)") {
		t.Errorf("the handed-over canary was not taken away, or not said why:\n%s", all)
	}
	if f.renewals < 990 {
		t.Errorf("waited for the Lease to run out (%d looks) though the run handed over", 1000-f.renewals)
	}
}
