// ptycho convert IN OUT: a scan in any format ptycho reads, written as CXI,
// PtyPy .ptyd or a fold_slice _dp/_para pair. Serial: rank 0 converts.
#include "commands.hpp"
#include "ptycho/io/scan_formats.hpp"
#include "ptycho/jobs/settings.hpp"

#include <iostream>
#include <memory>
#include <string>

namespace ptycho::jobs {

namespace {

struct ConvertOptions {
  std::string in, out, format;
  io::Orientation orientation;
};

int run_convert(MPI_Comm world, const ConvertOptions& opt) {
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  if (rank != 0) return 0;
  io::ScanFormat format = io::format_of_name(opt.out);
  if (opt.format == "cxi") format = io::ScanFormat::cxi;
  if (opt.format == "ptyd") format = io::ScanFormat::ptyd;
  if (opt.format == "fold_slice") format = io::ScanFormat::fold_slice;
  if (opt.format == "ptychodus") format = io::ScanFormat::ptychodus;
  io::ReadOptions given;
  given.orientation = opt.orientation;
  given.probe_scaling = io::ProbeScaling::as_in_file;
  const jobs::ScanToRead scan = jobs::scan_to_read(opt.in, given);  // a job file: its input, as its keys say
  const std::string& in = scan.path;
  const io::ReadOptions& read = scan.read;
  const io::ConvertReport r = io::convert_scan(in, opt.out, format, read);
  std::cout << "ptycho convert: " << r.frames << " frames from " << in << " ("
            << (read.description.given() ? std::string("HDF5 described by ") + opt.in : io::format_name(r.from))
            << ") to " << io::format_name(r.to) << ":";
  for (const std::string& f : r.files) std::cout << " " << f;
  std::cout << "\n";
  if (!read.orientation.identity()) std::cout << "  frames turned: " << read.orientation.text() << "\n";
  for (const std::string& l : r.lost) std::cout << "  not carried over: " << l << "\n";
  std::cout.flush();
  return 0;
}

}  // namespace

Command add_convert_command(CLI::App& app) {
  auto opt = std::make_shared<ConvertOptions>();
  Command c;
  c.app = app.add_subcommand("convert",
                             "Write a scan (CXI, PtyPy .ptyd, fold_slice _dp/_para or ptychodus) as CXI, .ptyd, a "
                             "fold_slice pair or ptychodus's batch layout; the format follows OUT's name unless "
                             "--format says");
  c.app->add_option("in", opt->in,
                    "the scan to read (never modified), or a job file: its input, read as its keys say "
                    "(frames_dataset ..., transpose, flip_y, flip_x)")
      ->required();
  c.app->add_option("out", opt->out,
                    "the file to write: *.ptyd, STEM_dp.hdf5 (writes STEM_dp.hdf5 and STEM_para.hdf5), "
                    "DIR/diffraction.h5 (ptychodus: writes DIR/product-in.h5 too) or CXI")
      ->required();
  c.app->add_option("--format", opt->format, "cxi, ptyd, fold_slice or ptychodus (default: from OUT's name)")
      ->check(CLI::IsMember({"cxi", "ptyd", "fold_slice", "ptychodus"}));
  c.app->add_flag("--transpose", opt->orientation.transpose, "transpose the frames as they are read");
  c.app->add_flag("--flip-y", opt->orientation.flip_y, "flip the frames up-down (after --transpose)");
  c.app->add_flag("--flip-x", opt->orientation.flip_x, "flip the frames left-right (after --flip-y)");
  c.run = [opt](MPI_Comm world) -> int { return run_convert(world, *opt); };
  return c;
}

}  // namespace ptycho::jobs
