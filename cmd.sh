# Job launchers of every stage, Kaldi/ESPnet style.  Each *_cmd is a command with the
# run.pl interface:  ${train_cmd} [--mem 4G] [--num-threads N] [--gpu G] JOB=1:N log.JOB.log cmd ...
#
#   train_cmd   CPU jobs: data preparation, audio formatting, feature dumps, scoring
#   decode_cmd  decoding (CPU, or GPU when --ngpu > 0 is passed through cuda_cmd)
#   cuda_cmd    jobs that may use a GPU (training, GPU decoding)
#
# Pick the backend here or in the environment: cmd_backend=local ./run.sh
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        # run.pl runs the jobs on this machine; --mem/--gpu/--time are accepted and ignored.
        export train_cmd="run.pl"
        export decode_cmd="run.pl"
        export cuda_cmd="run.pl"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (supported: local)" >&2
        return 1 2>/dev/null || exit 1
        ;;
esac
