# Job launchers of every stage, Kaldi/ESPnet style.  Each *_cmd is a command with the
# run.pl interface:  ${train_cmd} [--mem 4G] [--num-threads N] [--gpu G] JOB=1:N log.JOB.log cmd ...
#
#   train_cmd   CPU jobs: data preparation, audio formatting, feature dumps, scoring
#   decode_cmd  decoding (CPU, or GPU when --ngpu > 0 is passed through cuda_cmd)
#   cuda_cmd    jobs that may use a GPU (training, GPU decoding)
#
# Pick the backend here or in the environment: cmd_backend=slurm ./run.sh
#   local   utils/run.pl: every job on this machine (default)
#   slurm   utils/slurm.pl: one sbatch job array per call; the options become sbatch flags by
#           the rules of conf/slurm.conf (partitions, gres, ...: edit that file for your
#           cluster).  Logs and the q/ folders next to them must be on a file system shared
#           with the nodes.  Try it locally with tools/slurm/start.sh.
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        # run.pl runs the jobs on this machine; --mem/--gpu/--time are accepted and ignored.
        export train_cmd="run.pl"
        export decode_cmd="run.pl"
        # A training job uses every core (--train_num_threads): the cells of a grid run one
        # at a time rather than all at once, oversubscribed.
        export cuda_cmd="run.pl --max-jobs-run 1"
        ;;
    slurm)
        # The stage scripts add --num-threads N and, when --ngpu > 0, --gpu N; a later
        # option overrides an earlier one.  --mem is per CPU (sbatch --mem-per-cpu).
        # Data preparation, formatting, feature dumps, scoring: small CPU jobs.
        export train_cmd="slurm.pl --config conf/slurm.conf --mem 4G --time 4:00:00"
        # CPU decoding: one Whisper model (+ adapters) per job.
        export decode_cmd="slurm.pl --config conf/slurm.conf --mem 4G --time 12:00:00"
        # Training and GPU decoding: the gpu partition (one CPU per GPU unless --num-threads)
        # when the stage passes --gpu N, else a long CPU job.
        export cuda_cmd="slurm.pl --config conf/slurm.conf --mem 8G --time 2-00:00:00"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (supported: local, slurm)" >&2
        return 1 2>/dev/null || exit 1
        ;;
esac
