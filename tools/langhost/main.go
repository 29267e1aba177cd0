// Command pulumi-language-python runs Python programs and policy packs for the
// Pulumi engine.
//
// Pulumi's own Python host is published as a module the Go module proxy does not
// serve, so the toolchain builds this one: a small host that speaks the engine's
// current language protocol and hands the program to the executor script of the
// Python SDK it is paired with (pulumi-language-python-exec, installed next to
// this binary). It does what `pulumi preview`, `up`, `destroy` and policy packs
// need; the rest (templates, code generation, dependency installation) answers
// Unimplemented, and the engine treats that as "not supported".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// version is set at build time.
var version = "dev"

// The executor exits with this code after it has reported an error to the
// engine itself: the engine should stop without a second message.
const bailExitCode = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engine   string
	executor string
}

func main() {
	// The engine passes its own address as the last argument; flags before it
	// (tracing and the like) are not needed here.
	if len(os.Args) < 2 {
		cmdutil.Exit(errors.New("usage: pulumi-language-python [flags] ENGINE_ADDRESS"))
	}
	engine := os.Args[len(os.Args)-1]

	self, err := os.Executable()
	if err != nil {
		cmdutil.Exit(fmt.Errorf("finding this executable: %w", err))
	}
	executor := filepath.Join(filepath.Dir(self), "pulumi-language-python-exec")
	if _, err := os.Stat(executor); err != nil {
		cmdutil.Exit(fmt.Errorf("the executor script must sit next to this host: %w", err))
	}

	ctx, cancel := context.WithCancel(context.Background())
	// Stop when the engine goes away.
	if err := rpcutil.Healthcheck(ctx, engine, 5*time.Minute, cancel); err != nil {
		cmdutil.Exit(fmt.Errorf("watching the engine: %w", err))
	}
	done := make(chan bool)
	go func() {
		<-ctx.Done()
		close(done)
	}()
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: done,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, &host{engine: engine, executor: executor})
			return nil
		},
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("serving: %w", err))
	}
	// The engine reads the port from the first line of output.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		cmdutil.Exit(err)
	}
}

func (h *host) Handshake(
	ctx context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(ctx context.Context, _ *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// GetRequiredPackages names no packages: the engine then loads each provider
// when the program first asks for it, which it does anyway for explicit ones.
func (h *host) GetRequiredPackages(
	ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

func (h *host) GetRequiredPlugins(
	ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

// python is the interpreter for a program or policy pack: the one in its
// `virtualenv` runtime option when it has one, else the first python3 on PATH;
// and the environment variables that activate that virtualenv.
func python(info *pulumirpc.ProgramInfo) (string, []string, error) {
	venv := ""
	if info != nil && info.GetOptions() != nil {
		if v, ok := info.GetOptions().AsMap()["virtualenv"].(string); ok && v != "" {
			venv = v
			if !filepath.IsAbs(venv) {
				venv = filepath.Join(info.GetRootDirectory(), venv)
			}
		}
	}
	if venv == "" {
		path, err := exec.LookPath("python3")
		if err != nil {
			return "", nil, errors.New("no python3 on PATH and no virtualenv option in the project")
		}
		return path, nil, nil
	}
	interpreter := filepath.Join(venv, "bin", "python")
	if _, err := os.Stat(interpreter); err != nil {
		return "", nil, fmt.Errorf("the virtualenv %s has no bin/python; create it (make venv): %w", venv, err)
	}
	activate := []string{
		"VIRTUAL_ENV=" + venv,
		"PATH=" + filepath.Join(venv, "bin") + string(os.PathListSeparator) + os.Getenv("PATH"),
	}
	return interpreter, activate, nil
}

// exitPromptly runs the executor script as the main module, then ends the
// process the moment it is done instead of letting the interpreter tear itself
// down: by then the engine has recorded every step, and Python unloading the
// gRPC library and the SDK took 0.2 to 0.7 s after the last step of every
// preview and update (measured on 2 cores). The program's threads are joined
// and its atexit handlers run first, as a normal exit would.
const exitPromptly = `import atexit, os, runpy, sys, threading
script = sys.argv[1]
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as stop:
    code = stop.code
if code is None:
    code = 0
elif not isinstance(code, int):
    print(code, file=sys.stderr)
    code = 1
shutdown = getattr(threading, "_shutdown", None)
if shutdown is not None:
    shutdown()
atexit._run_exitfuncs()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
`

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	interpreter, activate, err := python(info)
	if err != nil {
		return nil, err
	}
	programDir, entry := info.GetProgramDirectory(), info.GetEntryPoint()
	if programDir == "" {
		programDir = req.GetPwd()
	}
	if entry == "" {
		entry = "."
	}
	args := []string{"-u", "-c", exitPromptly, h.executor,
		"--monitor", req.GetMonitorAddress(),
		"--engine", h.engine,
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", programDir,
		"--dry_run", strconv.FormatBool(req.GetDryRun()),
		"--parallel", strconv.Itoa(int(req.GetParallel())),
	}
	if org := req.GetOrganization(); org != "" {
		args = append(args, "--organization", org)
	}
	if root := info.GetRootDirectory(); root != "" {
		args = append(args, "--root_directory", root)
	}
	args = append(args, entry)
	args = append(args, req.GetArgs()...)

	config, err := json.Marshal(req.GetConfig())
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secrets, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, interpreter, args...)
	cmd.Dir = programDir
	cmd.Env = append(append(os.Environ(), activate...),
		"PULUMI_CONFIG="+string(config), "PULUMI_CONFIG_SECRET_KEYS="+string(secrets))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Run()
	// Python may not flush on an abnormal exit; make sure the engine sees it all.
	_ = os.Stdout.Sync()
	_ = os.Stderr.Sync()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return &pulumirpc.RunResponse{}, nil
	case errors.As(err, &exit) && exit.ExitCode() == bailExitCode:
		return &pulumirpc.RunResponse{Bail: true}, nil
	case errors.As(err, &exit):
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("program exited with non-zero exit code: %d", exit.ExitCode())}, nil
	default:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("could not run the Python executor: %v", err)}, nil
	}
}

// RunPlugin runs a plugin written in Python, such as a policy pack: the
// folder's __main__.py, with the engine's arguments, streaming its output back.
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest, server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse]) error {
	info := req.GetInfo()
	interpreter, activate, err := python(info)
	if err != nil {
		return err
	}
	program := info.GetProgramDirectory()
	if program == "" {
		program = req.GetPwd()
	}
	if entry := info.GetEntryPoint(); entry != "" && entry != "." {
		program = filepath.Join(program, entry)
	}
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}
	defer closer.Close()

	cmd := exec.CommandContext(server.Context(), interpreter, append([]string{"-u", program}, req.GetArgs()...)...)
	cmd.Dir = req.GetPwd()
	// The engine's environment for the plugin, then the virtualenv on top (the last value wins).
	cmd.Env = append(append(os.Environ(), req.GetEnv()...), activate...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return server.Send(&pulumirpc.RunPluginResponse{
				Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(exit.ExitCode())},
			})
		}
		return fmt.Errorf("could not run the plugin %s: %w", program, err)
	}
	return closer.Close()
}
