// rolling-watchdog: the cluster's side of a release judged by a run of the rollout command, which may die
// (a CI runner lost, SIGKILL) and leave a canary serving, or a rollout going on, unjudged.
//
// The run holds a Lease (coordination.k8s.io/v1) in the app's namespace and renews it every few seconds; on
// the Lease, an annotation says what undoing the release takes at its current stage (the mitigation: the
// canary's weight to 0 and its pods away, or the previous image put back), written by the run as each stage
// starts and cleared once the release is judged. This process watches that Lease and:
//   - exits 0 when the Lease is gone (the run ended and released it) or another run holds it;
//   - when it has not seen the Lease renewed for the Lease's duration, by its own clock (never comparing the
//     run's clock with the cluster's), or at once when the run ended alive and handed its unsettled release
//     over (interrupted, crashed, its rollback failed: the handover annotation), carries out the mitigation the annotation names, step by step, then
//     says what it did and why in an Event on the Deployment, an annotation on the Deployment and one on the
//     Lease, and exits 0 (2 when a step failed: the Job restarts it, and it tries again).
//
// It talks to the API server as any in-cluster client does (the pod's service account token, the cluster's
// CA, the `kubernetes` Service), with the standard library alone: its image holds this binary and nothing
// else. What it may do is the Role the stack's program gives its service account: read and annotate that
// Lease, read and patch the named Deployments and the Ingress, read the namespace's ReplicaSets and scale
// them (a ReplicaSet's name is made by its Deployment: RBAC cannot name it in advance), create Events.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// The annotations this process and the run share, on the Lease and the Deployment.
const (
	planAnnotation     = "rolling/mitigation"
	watchingAnnotation = "rolling/watchdog"
	actedAnnotation    = "rolling/watchdog-acted"
	handoverAnnotation = "rolling/handover"
	fieldManager       = "rolling-watchdog"
	serviceAccountDir  = "/var/run/secrets/kubernetes.io/serviceaccount"
	// How often a retirement looks at the ReplicaSets (the run's own looks every 0.1 s).
	retireEvery = 200 * time.Millisecond
)

// Step is one action of a mitigation, as the run wrote it (infra/kube/watchdog.py).
type Step struct {
	Do          string            `json:"do"` // scale, annotate, image, retire or wait
	Deployment  string            `json:"deployment,omitempty"`
	Ingress     string            `json:"ingress,omitempty"`
	Container   string            `json:"container,omitempty"`
	Image       string            `json:"image,omitempty"`
	Replicas    *int              `json:"replicas,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Seconds     float64           `json:"seconds,omitempty"` // wait: how long; retire: how long at most
	Says        string            `json:"says"`
}

// Plan is the mitigation of the release's current stage; no steps: nothing to undo.
type Plan struct {
	Stage   string `json:"stage"`
	Release string `json:"release"`
	Steps   []Step `json:"steps"`
}

type lease struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		HolderIdentity       string `json:"holderIdentity"`
		LeaseDurationSeconds int    `json:"leaseDurationSeconds"`
		RenewTime            string `json:"renewTime"`
	} `json:"spec"`
}

type api struct {
	base      string
	client    *http.Client
	tokenFile string // empty: no token (the tests' server)
}

// statusError is an answer of the API server other than 2xx.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.code, strings.TrimSpace(e.body))
}

// notNeeded says a step found nothing to do (retire: the failed version has no pods left, or no other
// version's pod became ready in time and the Deployment's own rollback goes on at its pace).
type notNeeded struct{ why string }

func (e *notNeeded) Error() string { return e.why }

func notFound(err error) bool {
	var s *statusError
	return errors.As(err, &s) && s.code == http.StatusNotFound
}

func inCluster() (*api, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset")
	}
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("the service account's ca.crt holds no certificate")
	}
	// The API server's certificate names the `kubernetes` Service by its DNS names on every cluster; not
	// every cluster's names its address.
	tlsConfig := &tls.Config{RootCAs: pool, ServerName: "kubernetes.default.svc", MinVersion: tls.VersionTLS12}
	transport := &http.Transport{TLSClientConfig: tlsConfig, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	return &api{
		base:      "https://" + net.JoinHostPort(host, port),
		client:    &http.Client{Transport: transport, Timeout: 10 * time.Second},
		tokenFile: serviceAccountDir + "/token",
	}, nil
}

func (a *api) do(method, path, contentType string, body any, out any) error {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, a.base+path, reader)
	if err != nil {
		return err
	}
	if a.tokenFile != "" {
		// Read each time: the kubelet rotates a projected token.
		token, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return &statusError{resp.StatusCode, string(data)}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

const (
	mergePatch     = "application/merge-patch+json"
	strategicPatch = "application/strategic-merge-patch+json"
)

func (a *api) patch(path, kind string, body any) error {
	return a.do(http.MethodPatch, path+"?fieldManager="+fieldManager, kind, body, nil)
}

type watchdog struct {
	api        *api
	namespace  string
	lease      string
	holder     string
	job        string
	deployment string
	poll       time.Duration
	now        func() time.Time
	log        io.Writer
}

func (w *watchdog) leasePath() string {
	return fmt.Sprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", w.namespace, w.lease)
}

func (w *watchdog) deploymentPath(name string) string {
	return fmt.Sprintf("/apis/apps/v1/namespaces/%s/deployments/%s", w.namespace, name)
}

func (w *watchdog) say(format string, args ...any) {
	fmt.Fprintf(w.log, "%s rolling-watchdog: %s\n", w.now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

func (w *watchdog) annotateLease(key, value string) error {
	body := map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}}
	return w.api.patch(w.leasePath(), mergePatch, body)
}

// watch returns when the run is over (nil, with why) or lost (the Lease's last state, with why).
func (w *watchdog) watch() (*lease, string, error) {
	var lastRenew string
	var seen time.Time
	said := false
	for {
		var l lease
		err := w.api.do(http.MethodGet, w.leasePath(), "", nil, &l)
		switch {
		case notFound(err):
			return nil, "the run released its lease: its release is judged", nil
		case err != nil:
			// Nobody can act while the API server cannot be reached: look again.
			w.say("could not read Lease %s/%s: %v", w.namespace, w.lease, err)
		case l.Spec.HolderIdentity != w.holder:
			return nil, fmt.Sprintf("another run holds the stack now (%s)", l.Spec.HolderIdentity), nil
		default:
			if !said {
				// The run waits for this before its release changes anything: the watchdog can read its
				// Lease, and so is watching it.
				mark, _ := json.Marshal(map[string]string{"job": w.job, "since": w.now().UTC().Format(time.RFC3339)})
				if err := w.annotateLease(watchingAnnotation, string(mark)); err != nil {
					w.say("could not say on Lease %s that it watches it: %v", w.lease, err)
				} else {
					said = true
					w.say("watching Lease %s/%s held by %s", w.namespace, w.lease, w.holder)
				}
			}
			if text := l.Metadata.Annotations[handoverAnnotation]; text != "" {
				// The run ends alive with its release unsettled, and leaves it to this watchdog now.
				var handover struct {
					Why string `json:"why"`
				}
				_ = json.Unmarshal([]byte(text), &handover)
				return &l, fmt.Sprintf("the run that held Lease %s (%s) handed its release over as it ended (%s)",
					w.lease, w.holder, handover.Why), nil
			}
			if l.Spec.RenewTime != lastRenew || seen.IsZero() {
				lastRenew, seen = l.Spec.RenewTime, w.now()
			}
			duration := time.Duration(l.Spec.LeaseDurationSeconds) * time.Second
			if quiet := w.now().Sub(seen); duration > 0 && quiet > duration {
				why := fmt.Sprintf("the run that held Lease %s (%s) has not renewed it for %.0fs (it lasts %ds)",
					w.lease, w.holder, quiet.Seconds(), l.Spec.LeaseDurationSeconds)
				return &l, why, nil
			}
		}
		time.Sleep(w.poll)
	}
}

// carry out runs each step of plan; what it did, and the first error.
func (w *watchdog) carryOut(plan Plan) ([]string, error) {
	var did []string
	for _, step := range plan.Steps {
		err := w.step(step)
		var skipped *notNeeded
		switch {
		case notFound(err):
			did = append(did, step.Says+" (nothing to do: not there)")
		case errors.As(err, &skipped):
			did = append(did, step.Says+" (not done: "+skipped.why+")")
		case err != nil:
			return did, fmt.Errorf("%s: %w", step.Says, err)
		default:
			did = append(did, step.Says)
		}
		w.say("%s", did[len(did)-1])
	}
	return did, nil
}

func (w *watchdog) step(step Step) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var skipped *notNeeded
		if err = w.once(step); err == nil || notFound(err) || errors.As(err, &skipped) {
			return err
		}
		var s *statusError
		if errors.As(err, &s) && s.code/100 == 4 && s.code != http.StatusConflict && s.code != http.StatusTooManyRequests {
			return err // refused: trying again changes nothing
		}
		time.Sleep(time.Duration(attempt+1) * time.Second)
	}
	return err
}

func (w *watchdog) once(step Step) error {
	switch step.Do {
	case "scale":
		replicas := 0
		if step.Replicas != nil {
			replicas = *step.Replicas
		}
		body := map[string]any{"spec": map[string]any{"replicas": replicas}}
		return w.api.patch(w.deploymentPath(step.Deployment)+"/scale", mergePatch, body)
	case "annotate":
		path := fmt.Sprintf("/apis/networking.k8s.io/v1/namespaces/%s/ingresses/%s", w.namespace, step.Ingress)
		body := map[string]any{"metadata": map[string]any{"annotations": step.Annotations}}
		return w.api.patch(path, mergePatch, body)
	case "image":
		container := map[string]string{"name": step.Container, "image": step.Image}
		body := map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []any{container},
		}}}}
		return w.api.patch(w.deploymentPath(step.Deployment), strategicPatch, body)
	case "retire":
		return w.retire(step)
	case "wait":
		time.Sleep(time.Duration(step.Seconds * float64(time.Second)))
		return nil
	}
	return fmt.Errorf("a step this watchdog does not know: %q", step.Do)
}

// workloadSpec is what the watchdog reads of a Deployment's or a ReplicaSet's spec.
type workloadSpec struct {
	Replicas *int `json:"replicas"`
	Template struct {
		Spec struct {
			Containers []struct {
				Image string `json:"image"`
			} `json:"containers"`
		} `json:"spec"`
	} `json:"template"`
}

// image is the first container's image ("" when there is none).
func (s *workloadSpec) image() string {
	if len(s.Template.Spec.Containers) == 0 {
		return ""
	}
	return s.Template.Spec.Containers[0].Image
}

type replicaSet struct {
	Metadata struct {
		Name            string `json:"name"`
		OwnerReferences []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Spec   workloadSpec `json:"spec"`
	Status struct {
		ReadyReplicas int `json:"readyReplicas"`
	} `json:"status"`
}

type deployment struct {
	Metadata struct {
		Generation int64 `json:"generation"`
	} `json:"metadata"`
	Spec   workloadSpec `json:"spec"`
	Status struct {
		ObservedGeneration int64 `json:"observedGeneration"`
	} `json:"status"`
}

// retire takes the pods of the release (step.Image) out of the Deployment's Service as soon as the previous
// version's pods are ready to take their place, one for one: its ReplicaSet scaled down to the replicas the
// previous version's ready pods do not yet cover, until 0. The Deployment controller does the same, but only
// once those pods have been ready for minReadySeconds (its rolling update counts available pods); a lost
// run's release is not known to be failing, so unlike the run's mitigation of a breach (infra/kube/watch.py,
// LiveCluster.retire, all at once behind one ready pod) the Service never has fewer ready pods than the
// Deployment's replicas on this account. It starts once the controller has taken in the template put back
// (it then only ever scales the release's ReplicaSet down), and gives up after step.Seconds, leaving the rest
// to the controller.
func (w *watchdog) retire(step Step) error {
	deadline := w.now().Add(time.Duration(step.Seconds * float64(time.Second)))
	path := fmt.Sprintf("/apis/apps/v1/namespaces/%s/replicasets", w.namespace)
	for {
		var d deployment
		if err := w.api.do(http.MethodGet, w.deploymentPath(step.Deployment), "", nil, &d); err != nil {
			return err
		}
		if d.Spec.image() == step.Image {
			return &notNeeded{"the Deployment's template still names " + step.Image}
		}
		var sets struct {
			Items []replicaSet `json:"items"`
		}
		if err := w.api.do(http.MethodGet, path, "", nil, &sets); err != nil {
			return err
		}
		var retiring []replicaSet
		ready := 0
		for _, rs := range sets.Items {
			owned := false
			for _, o := range rs.Metadata.OwnerReferences {
				owned = owned || (o.Kind == "Deployment" && o.Name == step.Deployment)
			}
			switch {
			case !owned:
			case rs.Spec.image() == step.Image:
				if rs.Spec.Replicas == nil || *rs.Spec.Replicas > 0 {
					retiring = append(retiring, rs)
				}
			default:
				ready += rs.Status.ReadyReplicas
			}
		}
		if len(retiring) == 0 {
			return nil
		}
		if d.Status.ObservedGeneration >= d.Metadata.Generation {
			// What the release's pods must still cover: the replicas the previous version's ready pods do not.
			keep := 1
			if d.Spec.Replicas != nil {
				keep = *d.Spec.Replicas
			}
			keep = max(keep-ready, 0)
			for _, rs := range retiring {
				have := 1
				if rs.Spec.Replicas != nil {
					have = *rs.Spec.Replicas
				}
				want := min(have, keep)
				keep -= want
				if want == have {
					continue
				}
				body := map[string]any{"spec": map[string]any{"replicas": want}}
				if err := w.api.patch(path+"/"+rs.Metadata.Name+"/scale", mergePatch, body); err != nil && !notFound(err) {
					return err
				}
			}
		}
		if !w.now().Before(deadline) {
			return &notNeeded{fmt.Sprintf("the previous version's pods were not all ready within %.0fs; the Deployment goes on at its own pace", step.Seconds)}
		}
		time.Sleep(min(w.poll, retireEvery))
	}
}

// tell says what happened in an Event on the Deployment and an annotation on it and on the Lease.
func (w *watchdog) tell(plan Plan, why string, did []string, failed error) {
	message := why + ": "
	if len(plan.Steps) == 0 {
		message += "nothing to undo (no stage of the release was under way)"
	} else {
		message += fmt.Sprintf("%s at its %s: %s", plan.Release, plan.Stage, strings.Join(did, "; "))
	}
	if failed != nil {
		message += "; FAILED: " + failed.Error()
	}
	now := w.now().UTC().Format(time.RFC3339)
	reason := "RunLost"
	if failed != nil {
		reason = "RunLostMitigationFailed"
	}
	event := map[string]any{
		"metadata": map[string]any{"generateName": w.deployment + ".", "namespace": w.namespace},
		"involvedObject": map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment", "name": w.deployment, "namespace": w.namespace,
		},
		"reason": reason, "message": message, "type": "Warning", "count": 1,
		"firstTimestamp": now, "lastTimestamp": now,
		"source":             map[string]string{"component": fieldManager},
		"reportingComponent": fieldManager, "reportingInstance": w.job,
	}
	if err := w.api.do(http.MethodPost, fmt.Sprintf("/api/v1/namespaces/%s/events", w.namespace), "application/json", event, nil); err != nil {
		w.say("could not record an Event: %v", err)
	}
	record := map[string]any{"at": now, "run": w.holder, "why": why, "stage": plan.Stage, "release": plan.Release, "did": did}
	if failed != nil {
		record["failed"] = failed.Error()
	}
	text, _ := json.Marshal(record)
	body := map[string]any{"metadata": map[string]any{"annotations": map[string]string{watchingAnnotation: string(text)}}}
	if err := w.api.patch(w.deploymentPath(w.deployment), mergePatch, body); err != nil && !notFound(err) {
		w.say("could not annotate Deployment %s: %v", w.deployment, err)
	}
	if failed == nil {
		if err := w.annotateLease(actedAnnotation, string(text)); err != nil {
			w.say("could not annotate Lease %s: %v", w.lease, err)
		}
	}
	w.say("%s", message)
}

func (w *watchdog) run() int {
	l, why, _ := w.watch()
	if l == nil {
		w.say("%s; exiting", why)
		return 0
	}
	if _, done := l.Metadata.Annotations[actedAnnotation]; done {
		w.say("the lost run's release was already mitigated; exiting")
		return 0
	}
	var plan Plan
	if text := l.Metadata.Annotations[planAnnotation]; text != "" {
		if err := json.Unmarshal([]byte(text), &plan); err != nil {
			w.tell(plan, why, nil, fmt.Errorf("the Lease's %s is not a plan: %v", planAnnotation, err))
			return 2
		}
	}
	did, err := w.carryOut(plan)
	w.tell(plan, why, did, err)
	if err != nil {
		return 2
	}
	return 0
}

func main() {
	w := &watchdog{now: time.Now, log: os.Stderr}
	flag.StringVar(&w.namespace, "namespace", "", "the app's namespace")
	flag.StringVar(&w.lease, "lease", "", "the Lease the run renews")
	flag.StringVar(&w.holder, "holder", "", "the run's identity on the Lease")
	flag.StringVar(&w.job, "job", "", "this Job's name (the run waits for it on the Lease)")
	flag.StringVar(&w.deployment, "deployment", "", "the Deployment whose Events and annotation say what happened")
	flag.DurationVar(&w.poll, "poll", time.Second, "how often the Lease is read")
	flag.Parse()
	for name, value := range map[string]string{"namespace": w.namespace, "lease": w.lease, "holder": w.holder, "deployment": w.deployment} {
		if value == "" {
			fmt.Fprintf(os.Stderr, "rolling-watchdog: --%s is required\n", name)
			os.Exit(1)
		}
	}
	client, err := inCluster()
	if err != nil {
		fmt.Fprintf(os.Stderr, "rolling-watchdog: %v\n", err)
		os.Exit(1)
	}
	w.api = client
	os.Exit(w.run())
}
